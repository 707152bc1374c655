"""`usersvc token --sub NAME [--admin] [--ttl SECONDS]`: a bearer token signed with the local key.

The key is `AUTH_SIGNING_KEY_FILE` when set, else the one `usersvc dev` keeps in its data
directory (`--data-dir`, default `var/dev`, as for `usersvc dev`), so the command run in the same
folder as `usersvc dev` mints tokens its service accepts. Where the service trusts an identity
provider (`AUTH_JWKS_URL`), tokens come from that provider and this command refuses.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from usersvc.events import USERNAME_RE
from usersvc.settings import Settings

# As `usersvc.tokens` spells them; that module (PyJWT, cryptography) is imported only when a token
# is made, so other commands do not load it.
ADMIN_SCOPE = "users:admin"
DEV_KEY_FILE = "signing-key.pem"

DEFAULT_DATA_DIR = "var/dev"
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 30 * 24 * 3600
# The token `usersvc dev` prints: an administrator's, for a working day and then some.
DEV_ADMIN_SUBJECT = "admin"
DEV_ADMIN_TTL = timedelta(hours=24)


def register(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="print a bearer token signed with the local key (development)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token.add_argument("--sub", required=True, type=_username, metavar="NAME", help="the user")
    token.add_argument(
        "--admin", action="store_true", help=f"add the scope {ADMIN_SCOPE}: any user"
    )
    token.add_argument(
        "--ttl",
        type=_ttl,
        default=DEFAULT_TTL_SECONDS,
        metavar="SECONDS",
        help=f"how long it is valid (default {DEFAULT_TTL_SECONDS})",
    )
    token.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"where `usersvc dev` keeps its key (default {DEFAULT_DATA_DIR})",
    )
    token.set_defaults(run=_token)


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from usersvc.tokens import load_private_key, mint

    key_file = _key_file(settings, Path(args.data_dir))
    token = mint(
        load_private_key(key_file),
        subject=args.sub,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        ttl=timedelta(seconds=args.ttl),
        scopes=[ADMIN_SCOPE] if args.admin else [],
    )
    sys.stdout.write(token + "\n")
    return 0


def _key_file(settings: Settings, data_dir: Path) -> Path:
    from usersvc.tokens import SigningKeyError

    if settings.auth_signing_key_file is not None:
        return settings.auth_signing_key_file
    if settings.auth_jwks_url is not None:
        raise SigningKeyError(
            f"tokens come from the identity provider at {settings.auth_jwks_url} "
            "(AUTH_JWKS_URL); there is no local key to sign with"
        )
    dev_key = data_dir / DEV_KEY_FILE
    if not dev_key.is_file():
        raise SigningKeyError(
            f"no signing key: set AUTH_SIGNING_KEY_FILE, or run `usersvc dev` in this folder "
            f"first (it keeps one in {dev_key})"
        )
    return dev_key


def dev_signing_key(settings: Settings, data_dir: Path) -> Path:
    """The key `usersvc dev` gives its service: AUTH_SIGNING_KEY_FILE, or its own, made once."""
    from usersvc.tokens import ensure_private_key, load_private_key

    if settings.auth_signing_key_file is not None:
        load_private_key(settings.auth_signing_key_file)
        return settings.auth_signing_key_file
    key_file = data_dir / DEV_KEY_FILE
    ensure_private_key(key_file)
    return key_file


def dev_admin_token(settings: Settings, key_file: Path) -> str:
    """The line `usersvc dev` prints: a ready administrator's token."""
    from usersvc.tokens import load_private_key, mint

    token = mint(
        load_private_key(key_file),
        subject=DEV_ADMIN_SUBJECT,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        ttl=DEV_ADMIN_TTL,
        scopes=[ADMIN_SCOPE],
    )
    hours = int(DEV_ADMIN_TTL.total_seconds() // 3600)
    return (
        f"Admin token: {token}\n"
        f"  (valid {hours} h; more with `usersvc token --sub NAME [--admin]` in this folder)\n"
    )


def _username(value: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a username (letters, digits, . _ -; 1-100)"
        )
    return value


def _ttl(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of seconds from 1 to {MAX_TTL_SECONDS}"
        )
    return seconds

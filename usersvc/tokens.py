"""Bearer tokens: the claims usersvc reads, and the local signing key used in development.

A token is a JWT with `sub` (the username it speaks for), `iss`, `aud`, `exp`, `iat` and, for an
administrator, `scope` containing `users:admin`. In production an identity provider signs them and
the service fetches its public keys from a JWKS URL. In development a PEM private key file (EC
P-256 by default; RSA and Ed25519 files are read too) signs them with `usersvc token`, and the
service verifies them with its public half. The algorithm follows from the key's type, so a token
can never pick its own (no `none`, no HS256 made with a public key).

No I/O at import; every function that touches a file names it in its error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from usersvc.settings import SettingsError

ADMIN_SCOPE = "users:admin"
# The key `usersvc dev` keeps in its data directory, and where `usersvc token` looks for it.
DEV_KEY_FILE = "signing-key.pem"
DEFAULT_TTL = timedelta(hours=1)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class SigningKeyError(SettingsError):
    """A signing key file is missing, unreadable or of a kind tokens cannot be signed with (a
    configuration error: the CLI reports it as one line, as it does a bad setting)."""


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """The one JWT algorithm a key of this type signs and verifies with."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise SigningKeyError(f"EC curve {key.curve.name} has no JWT algorithm")
        return algorithm
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SigningKeyError(f"an RSA key of {key.key_size} bits is too short (2048 at least)")
        return "RS256"
    return "EdDSA"


def load_private_key(path: Path) -> PrivateKey:
    """The private key in the PEM file at `path` (unencrypted PKCS#8 or traditional)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"signing key {path}: cannot read it: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"signing key {path}: not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, PrivateKey):
        raise SigningKeyError(f"signing key {path}: a {type(key).__name__} cannot sign tokens")
    try:
        algorithm_for(key)
    except SigningKeyError as exc:
        raise SigningKeyError(f"signing key {path}: {exc}") from None
    return key


def ensure_private_key(path: Path) -> PrivateKey:
    """The key at `path`, made first (EC P-256, readable by its owner only) if there is none."""
    if not path.exists():
        _write_new_key(path)
    return load_private_key(path)


def _write_new_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a temporary name, then renamed: never a half-written key.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """The scopes a token carries: `scope` as a space-separated string (RFC 8693) or a list."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list):
        return frozenset(item for item in scope if isinstance(item, str))
    return frozenset()


def mint(
    key: PrivateKey,
    *,
    subject: str,
    issuer: str,
    audience: str,
    ttl: timedelta = DEFAULT_TTL,
    scopes: Iterable[str] = (),
    now: datetime | None = None,
) -> str:
    """A signed token for `subject`, valid for `ttl` from `now`."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl,
    }
    scope = " ".join(sorted(set(scopes)))
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm=algorithm_for(key))

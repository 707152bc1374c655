"""The local signing key, minted tokens, `usersvc token`, and the auth settings."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from usersvc import tokens
from usersvc.settings import SettingsError, load_settings
from usersvc.tokens import (
    ADMIN_SCOPE,
    SigningKeyError,
    algorithm_for,
    ensure_private_key,
    load_private_key,
    mint,
)
from usersvc_cli import token_command
from usersvc_cli.main import build_parser


def test_a_key_is_made_once_readable_by_its_owner_only_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "signing-key.pem"
    first = ensure_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ensure_private_key(path)
    assert algorithm_for(first) == "ES256"
    assert first.private_numbers() == again.private_numbers()  # type: ignore[union-attr]
    assert [p.name for p in path.parent.iterdir()] == ["signing-key.pem"]


def write_pem(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_rsa_and_ed25519_keys_sign_with_their_own_algorithm(tmp_path: Path) -> None:
    rsa_key = load_private_key(
        write_pem(tmp_path / "rsa.pem", rsa.generate_private_key(65537, 2048))
    )
    ed_key = load_private_key(write_pem(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate()))
    assert (algorithm_for(rsa_key), algorithm_for(ed_key)) == ("RS256", "EdDSA")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read it"),
        (b"not a key", "not an unencrypted PEM private key"),
        ("short rsa", "too short"),
    ],
    ids=["missing", "not PEM", "RSA of 1024 bits"],
)
def test_an_unusable_key_file_is_one_error_naming_the_file(
    tmp_path: Path, content: bytes | str | None, says: str
) -> None:
    path = tmp_path / "key.pem"
    if content == "short rsa":
        write_pem(path, rsa.generate_private_key(65537, 1024))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(SigningKeyError, match=says) as caught:
        load_private_key(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, SettingsError)


def test_a_minted_token_carries_the_claims_and_lasts_its_ttl(tmp_path: Path) -> None:
    key = ensure_private_key(tmp_path / "k.pem")
    now = datetime(2024, 1, 1, tzinfo=UTC)
    token = mint(key, subject="ann", issuer="i", audience="a", ttl=timedelta(minutes=10), now=now)
    claims = jwt.decode(
        token,
        key.public_key(),
        algorithms=["ES256"],
        audience="a",
        options={"verify_exp": False},
    )
    assert claims == {
        "sub": "ann",
        "iss": "i",
        "aud": "a",
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 600,
    }
    admin = mint(key, subject="root", issuer="i", audience="a", scopes=[ADMIN_SCOPE])
    assert jwt.decode(admin, key.public_key(), algorithms=["ES256"], audience="a")["scope"] == (
        ADMIN_SCOPE
    )


def test_the_cli_spells_the_scope_and_key_file_as_the_contract_does() -> None:
    assert (token_command.ADMIN_SCOPE, token_command.DEV_KEY_FILE) == (
        tokens.ADMIN_SCOPE,
        tokens.DEV_KEY_FILE,
    )


@pytest.fixture
def dev_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where `usersvc dev` ran: its key in var/dev, no settings of its own."""
    monkeypatch.chdir(tmp_path)
    for name in ("AUTH_SIGNING_KEY_FILE", "AUTH_JWKS_URL", "AUTH_ISSUER", "AUTH_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "none.toml"))
    ensure_private_key(tmp_path / "var" / "dev" / "signing-key.pem")
    return tmp_path


def verify(folder: Path, token: str) -> dict[str, object]:
    key = load_private_key(folder / "var" / "dev" / "signing-key.pem")
    claims: dict[str, object] = jwt.decode(
        token, key.public_key(), algorithms=["ES256"], audience="usersvc", issuer="usersvc"
    )
    return claims


def run_token(*args: str) -> int:
    parsed = build_parser().parse_args(["token", *args])
    return int(parsed.run(parsed, load_settings()))


def test_usersvc_token_signs_with_the_dev_key_of_the_folder(
    dev_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_token("--sub", "ann", "--ttl", "120") == 0
    claims = verify(dev_folder, capsys.readouterr().out.strip())
    assert claims["sub"] == "ann"
    assert claims["exp"] == claims["iat"] + 120  # type: ignore[operator]
    assert "scope" not in claims
    assert run_token("--sub", "root", "--admin") == 0
    assert verify(dev_folder, capsys.readouterr().out.strip())["scope"] == ADMIN_SCOPE


def test_usersvc_token_without_a_key_says_how_to_get_one(
    dev_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SigningKeyError, match="run `usersvc dev` in this folder"):
        run_token("--sub", "ann", "--data-dir", "elsewhere")
    assert capsys.readouterr().out == ""


def test_usersvc_token_refuses_where_an_identity_provider_signs(
    dev_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_JWKS_URL", "https://idp.example/jwks.json")
    with pytest.raises(SigningKeyError, match="identity provider"):
        run_token("--sub", "ann")


@pytest.mark.parametrize("args", [["--sub", "a b"], ["--sub", "ann", "--ttl", "0"]])
def test_usersvc_token_refuses_a_bad_argument(dev_folder: Path, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_token(*args)
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"auth_jwks_url": "https://idp/jwks", "auth_signing_key_file": "k.pem"}, "not both"),
        ({"auth_jwks_url": "ftp://idp/jwks"}, "auth_jwks_url"),
        ({"auth_algorithms": "RS256,HS256"}, "auth_algorithms"),
        ({"auth_algorithms": "none"}, "auth_algorithms"),
        ({"auth_audience": ""}, "auth_audience"),
    ],
)
def test_bad_auth_settings_stop_start_up_naming_the_key(
    overrides: dict[str, str], key: str
) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings(**overrides)


def test_an_empty_auth_setting_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_JWKS_URL", "")
    monkeypatch.setenv("AUTH_ALGORITHMS", "ES256, EdDSA")
    settings = load_settings()
    assert settings.auth_jwks_url is None
    assert settings.auth_algorithm_names == ("ES256", "EdDSA")

"""Who may change, delete, and read the history of a user: bearer tokens verified with PyJWT.

`PATCH`, `DELETE`, history and time travel call `require_access(username)` before anything else,
so a refused request reads no stream. A token is accepted when its signature, `exp`, `iss` and
`aud` hold (algorithms pinned by the key, never `none`), and it speaks for the user (`sub`) or
carries the scope `users:admin`. No or a bad token: 401 with a `WWW-Authenticate` challenge;
someone else's: 403.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from flask import current_app, request

from service.errors import AuthNotConfigured, AuthUnavailable, Forbidden, Unauthenticated
from usersvc.settings import Settings
from usersvc.tokens import (
    ADMIN_SCOPE,
    PublicKey,
    algorithm_for,
    load_private_key,
    scopes_of,
)

log = logging.getLogger(__name__)

# Seconds a request waits for the identity provider's key set.
JWKS_TIMEOUT = 5.0
# Seconds the key set is cached before it is fetched again (a token with an unknown `kid` also
# fetches it, at most once per PyJWT's cool-down).
JWKS_LIFESPAN = 300.0
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
EXTENSION = "usersvc.token_verifier"


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    admin: bool


class TokenVerifier(Protocol):
    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims; raises `jwt.PyJWTError` for a token that is not valid."""
        ...


@dataclass(frozen=True)
class _Checks:
    issuer: str
    audience: str
    leeway: float

    def decode(self, token: str, key: Any, algorithms: Sequence[str]) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options={"require": REQUIRED_CLAIMS},
        )
        return claims


class KeyFileVerifier:
    """Development: the public half of the local signing key, with the algorithm of its type."""

    def __init__(self, public_key: PublicKey, checks: _Checks) -> None:
        self.public_key = public_key
        self.algorithm = algorithm_for(public_key)
        self.checks = checks

    def claims(self, token: str) -> dict[str, Any]:
        return self.checks.decode(token, self.public_key, [self.algorithm])


class JwksVerifier:
    """Production: the identity provider's keys, by the token's `kid`, from its JWKS URL."""

    def __init__(self, url: str, algorithms: Sequence[str], checks: _Checks) -> None:
        self.algorithms = tuple(algorithms)
        self.checks = checks
        # Built here, fetched on the first request: no I/O at start-up.
        self._client = jwt.PyJWKClient(
            url, cache_keys=True, lifespan=JWKS_LIFESPAN, timeout=JWKS_TIMEOUT
        )

    def claims(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in self.algorithms:
            raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
        signing_key = self._client.get_signing_key_from_jwt(token)
        return self.checks.decode(token, signing_key, self.algorithms)


def verifier_from_settings(settings: Settings) -> TokenVerifier | None:
    """The verifier the settings describe; None when they name no key (logged)."""
    checks = _Checks(settings.auth_issuer, settings.auth_audience, settings.auth_leeway)
    if settings.auth_jwks_url is not None:
        return JwksVerifier(settings.auth_jwks_url, settings.auth_algorithm_names, checks)
    if settings.auth_signing_key_file is not None:
        key = load_private_key(settings.auth_signing_key_file)
        return KeyFileVerifier(key.public_key(), checks)
    log.warning(
        "no token key configured (AUTH_JWKS_URL or AUTH_SIGNING_KEY_FILE): PATCH, DELETE, "
        "history and time travel answer 500 auth_not_configured"
    )
    return None


def require_access(username: str) -> Caller:
    """The caller, if its bearer token may act on `username`; else 401, 403 (or 5xx)."""
    verifier: TokenVerifier | None = current_app.extensions[EXTENSION]
    if verifier is None:
        raise AuthNotConfigured("this service has no key to verify tokens with")
    caller = authenticate(verifier, request.headers.get("Authorization"))
    if caller.subject != username and not caller.admin:
        raise Forbidden(
            f"this token speaks for {caller.subject!r}: it may act on that user only, unless it "
            f"carries the scope {ADMIN_SCOPE}"
        )
    return caller


def authenticate(verifier: TokenVerifier, authorization: str | None) -> Caller:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if not authorization or scheme.lower() != "bearer":
        raise Unauthenticated("send a token: Authorization: Bearer <JWT>", error=None)
    token = token.strip()
    if not token:
        raise Unauthenticated("the Authorization header holds no token")
    try:
        claims = verifier.claims(token)
    except jwt.PyJWKClientConnectionError as exc:
        # Its text names the URL and the socket error: for the log (the cause), not the client.
        raise AuthUnavailable("the identity provider's keys cannot be fetched") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated(_reason(exc)) from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the token's sub claim is not a user name")
    return Caller(subject, ADMIN_SCOPE in scopes_of(claims))


def _reason(exc: jwt.PyJWTError) -> str:
    """What is wrong with a token, for its holder (never a key or a claim's secret value)."""
    match exc:
        case jwt.ExpiredSignatureError():
            return "the token has expired"
        case jwt.InvalidAudienceError():
            return "the token is not meant for this service (aud)"
        case jwt.InvalidIssuerError():
            return "the token's issuer is not trusted (iss)"
        case jwt.MissingRequiredClaimError():
            return f"the token lacks the {exc.claim} claim"
        case jwt.ImmatureSignatureError():
            return "the token is not valid yet (nbf or iat)"
        case jwt.InvalidAlgorithmError():
            return "the token's signature algorithm is not accepted"
        case jwt.InvalidSignatureError():
            return "the token's signature does not verify"
        case jwt.PyJWKClientError():
            return "no key of the identity provider signed this token (kid)"
        case jwt.DecodeError():
            return "the token is not a well-formed JWT"
    return "the token is not valid"

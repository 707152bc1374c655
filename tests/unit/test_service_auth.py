"""Who may change, delete and read the history of a user: checked first, 401/403 as JSON."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from tests.fixtures.processes import free_port
from tests.fixtures.service_app import FakeService, fake_service
from tests.fixtures.service_fakes import FakeUsers, MemoryStore
from tests.fixtures.tokens import AUDIENCE, ISSUER, forged, hs256_with_public_key, unsigned
from usersvc.settings import Settings

# Each protected request, as (method, path, extra arguments): all four refuse the same way.
PROTECTED: list[tuple[str, str, dict[str, Any]]] = [
    ("patch", "/users/ann", {"json": {"fullName": "X"}, "headers": {"If-Match": '"0"'}}),
    ("delete", "/users/ann", {"headers": {"If-Match": '"0"'}}),
    ("get", "/users/ann/events", {}),
    ("get", "/users/ann?atRevision=0", {}),
    ("get", "/users/ann?asOf=2030-01-01T00:00:00Z", {}),
]
IDS = ["PATCH", "DELETE", "history", "atRevision", "asOf"]


@pytest.fixture
def svc(tmp_path: Path) -> FakeService:
    service = fake_service(tmp_path)
    service.create("ann")
    return service


def send(svc: FakeService, request: tuple[str, str, dict[str, Any]], auth: str | None) -> Any:
    method, path, kwargs = request
    headers = dict(kwargs.get("headers", {}))
    if auth is not None:
        headers["Authorization"] = auth
    return getattr(svc.client, method)(path, **{**kwargs, "headers": headers})


def no_token(svc: FakeService) -> str | None:
    return None


BAD_TOKENS: list[tuple[str, Callable[[FakeService], str | None], str | None, str]] = [
    ("no header", no_token, None, "send a token"),
    ("another scheme", lambda s: "Basic YW5uOnB3", None, "send a token"),
    ("empty bearer", lambda s: "Bearer ", "invalid_token", "holds no token"),
    ("not a JWT", lambda s: "Bearer abc.def", "invalid_token", "not a well-formed JWT"),
    ("forged signature", lambda s: f"Bearer {forged('ann')}", "invalid_token", "signature"),
    (
        "expired",
        lambda s: "Bearer " + s.signer.token("ann", now=datetime.now(UTC) - timedelta(hours=2)),
        "invalid_token",
        "expired",
    ),
    (
        "wrong audience",
        lambda s: "Bearer " + s.signer.token("ann", audience="another-api"),
        "invalid_token",
        "(aud)",
    ),
    (
        "wrong issuer",
        lambda s: "Bearer " + s.signer.token("ann", issuer="someone-else"),
        "invalid_token",
        "(iss)",
    ),
    ("alg none", lambda s: f"Bearer {unsigned('ann')}", "invalid_token", "algorithm"),
    (
        "HS256 keyed with the public key",
        lambda s: f"Bearer {hs256_with_public_key(s.signer, 'ann')}",
        "invalid_token",
        "algorithm",
    ),
    (
        "no exp",
        lambda s: (
            "Bearer "
            + jwt.encode(
                {"sub": "ann", "iss": ISSUER, "aud": AUDIENCE}, s.signer.key, algorithm="ES256"
            )
        ),
        "invalid_token",
        "lacks the exp claim",
    ),
]


@pytest.mark.parametrize("request_", PROTECTED, ids=IDS)
@pytest.mark.parametrize(
    ("case", "token", "error", "says"), BAD_TOKENS, ids=[case[0] for case in BAD_TOKENS]
)
def test_a_missing_or_invalid_token_is_401_with_a_challenge_before_anything_is_read(
    svc: FakeService,
    request_: tuple[str, str, dict[str, Any]],
    case: str,
    token: Callable[[FakeService], str | None],
    error: str | None,
    says: str,
) -> None:
    reads, appended = svc.store.reads, len(svc.store.appended)
    response = send(svc, request_, token(svc))
    assert response.status_code == 401
    assert svc.error(response)["code"] == "unauthenticated"
    assert says in svc.error(response)["message"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="usersvc"')
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert svc.store.reads == reads
    assert len(svc.store.appended) == appended


@pytest.mark.parametrize("request_", PROTECTED, ids=IDS)
def test_another_users_token_is_403_before_anything_is_read(
    svc: FakeService, request_: tuple[str, str, dict[str, Any]]
) -> None:
    reads, appended = svc.store.reads, len(svc.store.appended)
    response = send(svc, request_, f"Bearer {svc.signer.token('bob')}")
    assert response.status_code == 403
    assert svc.error(response)["code"] == "forbidden"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert svc.store.reads == reads
    assert len(svc.store.appended) == appended


@pytest.mark.parametrize("request_", PROTECTED, ids=IDS)
@pytest.mark.parametrize("admin", [False, True], ids=["own token", "admin token"])
def test_the_users_own_token_and_an_admin_token_are_let_through(
    svc: FakeService, request_: tuple[str, str, dict[str, Any]], admin: bool
) -> None:
    token = svc.signer.token("root" if admin else "ann", admin=admin)
    response = send(svc, request_, f"Bearer {token}")
    assert response.status_code < 300, response.data


def test_a_scope_list_claim_counts_as_well(svc: FakeService) -> None:
    now = datetime.now(UTC)
    token = jwt.encode(
        {
            "sub": "root",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": now + timedelta(minutes=1),
            "scope": ["openid", "users:admin"],
        },
        svc.signer.key,
        algorithm="ES256",
    )
    response = svc.client.get("/users/ann/events", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/users", "/users/ann"])
def test_post_and_plain_get_stay_open(svc: FakeService, path: str) -> None:
    if path == "/users":
        response = svc.client.post("/users", json={"username": "bob", "fullName": "Bob"})
        assert response.status_code == 201
    else:
        assert svc.client.get(path).status_code == 404  # open: the read model has no row


@pytest.mark.parametrize("request_", PROTECTED, ids=IDS)
def test_with_no_key_configured_protected_requests_are_500_auth_not_configured(
    tmp_path: Path, request_: tuple[str, str, dict[str, Any]]
) -> None:
    store = MemoryStore()
    app = create_app(Settings(), event_store=store, users=FakeUsers())
    service = FakeService(app, app.test_client(), store, FakeUsers(), fake_service(tmp_path).signer)
    response = send(service, request_, f"Bearer {service.signer.token('ann')}")
    assert response.status_code == 500
    assert service.error(response)["code"] == "auth_not_configured"
    assert store.reads == 0


class Jwks:
    """An identity provider's key set served over real HTTP."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.requests = 0


@pytest.fixture
def jwks_server(svc: FakeService) -> Iterator[tuple[str, Jwks]]:
    jwk = orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(svc.signer.key.public_key()))
    served = Jwks([{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests += 1
            body = orjson.dumps({"keys": served.keys})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", served
    server.shutdown()
    server.server_close()
    thread.join()


def jwks_client(url: str, store: MemoryStore) -> FlaskClient:
    settings = Settings(auth_jwks_url=url, auth_issuer=ISSUER, auth_audience=AUDIENCE)
    return create_app(settings, event_store=store, users=FakeUsers()).test_client()


def test_tokens_are_verified_with_the_identity_providers_jwks(
    svc: FakeService, jwks_server: tuple[str, Jwks]
) -> None:
    url, served = jwks_server
    client = jwks_client(url, svc.store)
    good = jwt.encode(
        {
            "sub": "ann",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": datetime.now(UTC) + timedelta(minutes=1),
        },
        svc.signer.key,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    for _ in range(3):
        response = client.get("/users/ann/events", headers={"Authorization": f"Bearer {good}"})
        assert response.status_code == 200, response.data
    assert served.requests == 1, "the key set is cached"
    unknown_kid = jwt.encode(
        {
            "sub": "ann",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": datetime.now(UTC) + timedelta(minutes=1),
        },
        svc.signer.key,
        algorithm="ES256",
        headers={"kid": "k2"},
    )
    refused = client.get("/users/ann/events", headers={"Authorization": f"Bearer {unknown_kid}"})
    assert refused.status_code == 401
    assert "(kid)" in svc.error(refused)["message"]
    forged_token = client.get(
        "/users/ann/events", headers={"Authorization": f"Bearer {forged('ann')}"}
    )
    assert forged_token.status_code == 401


def test_an_unreachable_jwks_is_503_auth_unavailable(svc: FakeService) -> None:
    port = free_port()
    client = jwks_client(f"http://127.0.0.1:{port}/jwks.json", svc.store)
    token = jwt.encode(
        {
            "sub": "ann",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": datetime.now(UTC) + timedelta(minutes=1),
        },
        svc.signer.key,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    response = client.get("/users/ann/events", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert svc.error(response)["code"] == "auth_unavailable"
    assert response.headers["Retry-After"]
    # The fetch's error names the URL and the socket's failure: the log has it, not the answer.
    assert str(port) not in response.get_data(as_text=True)


def test_a_jwks_token_with_an_algorithm_not_configured_is_refused(
    svc: FakeService, jwks_server: tuple[str, Jwks]
) -> None:
    url, served = jwks_server
    client = create_app(
        Settings(
            auth_jwks_url=url, auth_issuer=ISSUER, auth_audience=AUDIENCE, auth_algorithms="RS256"
        ),
        event_store=svc.store,
        users=FakeUsers(),
    ).test_client()
    token = jwt.encode(
        {
            "sub": "ann",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": datetime.now(UTC) + timedelta(minutes=1),
        },
        svc.signer.key,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    response = client.get("/users/ann/events", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert served.requests == 0

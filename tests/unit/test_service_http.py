"""The HTTP contract with injected fakes: validation, error shapes, opaque 500s, health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.errors import DatabaseUnavailable, EventStoreUnavailable, UsernameTaken
from service.retries import event_id
from service.users import Checkpoint, User
from tests.fixtures.service_fakes import FakeUsers, MemoryStore
from usersvc.events import UserCreated, decode_event
from usersvc.settings import Settings

FakeStore = MemoryStore
JSON = {"content_type": "application/json"}


def calls(store: MemoryStore) -> list[tuple[UserCreated, str, bool]]:
    """Each appended `user-created`, its correlation id, and whether its id came from the
    client's request id (a retry is recognised)."""
    found = []
    for _, _, event in store.appended:
        user = decode_event(event.type, event.data, event.metadata)
        assert isinstance(user, UserCreated)
        correlation = orjson.loads(event.metadata)["correlationId"]
        found.append((user, correlation, event.id == event_id(user, correlation)))
    return found


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def users() -> FakeUsers:
    return FakeUsers()


@pytest.fixture
def app(store: FakeStore, users: FakeUsers) -> Flask:
    # No start-up grace: the projection's state is what the tests set up, from the first probe.
    return create_app(
        Settings(health_startup_grace=0), event_store=store, users=users, verifier=None
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def error_of(response: Any) -> dict[str, Any]:
    assert response.is_json, response.data
    assert set(response.json) == {"error"}
    error: dict[str, Any] = response.json["error"]
    assert set(error) <= {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_post_answers_201_with_location_position_and_revision(
    client: FlaskClient, store: FakeStore
) -> None:
    response = client.post(
        "/users",
        json={"username": "donald-le", "fullName": "Donald Le"},
        headers={"X-Request-ID": "abc"},
    )
    assert response.status_code == 201
    assert response.headers["Location"] == "/users/donald-le"
    assert response.json == {"username": "donald-le", "commitPosition": 1001, "streamRevision": 0}
    assert response.headers["X-Commit-Position"] == "1001"
    assert response.headers["ETag"] == '"0"'
    user, correlation, idempotent = calls(store)[0]
    assert (user.username, user.full_name, correlation) == ("donald-le", "Donald Le", "abc")
    assert idempotent
    assert user.opened_at.tzinfo is not None


def test_post_without_request_id_gets_a_fresh_correlation_id(
    client: FlaskClient, store: FakeStore
) -> None:
    client.post("/users", json={"username": "a", "fullName": "A"})
    client.post("/users", json={"username": "b", "fullName": "B"})
    first, second = (call[1] for call in calls(store))
    assert first and second and first != second
    assert not any(call[2] for call in calls(store))


def test_the_request_id_is_echoed_on_every_response_and_is_the_correlation_id(
    client: FlaskClient, store: FakeStore
) -> None:
    created = client.post("/users", json={"username": "a", "fullName": "A"})
    made_up = created.headers["X-Request-ID"]
    assert made_up == calls(store)[0][1] and len(made_up) == 36
    for response in (
        client.post("/users", json={"username": "b"}, headers={"X-Request-ID": "r-1"}),
        client.get("/users/nobody", headers={"X-Request-ID": "r-1"}),
        client.get("/no/such/route", headers={"X-Request-ID": "r-1"}),
        client.delete("/users", headers={"X-Request-ID": "r-1"}),
    ):
        assert response.status_code >= 400
        assert response.headers["X-Request-ID"] == "r-1"


def test_a_long_request_id_is_cut_and_a_blank_one_replaced(
    client: FlaskClient, store: FakeStore
) -> None:
    client.post(
        "/users", json={"username": "a", "fullName": "A"}, headers={"X-Request-ID": "r" * 500}
    )
    client.post("/users", json={"username": "b", "fullName": "B"}, headers={"X-Request-ID": "  "})
    (_, long_id, long_idempotent), (_, blank_id, blank_idempotent) = calls(store)
    assert (long_id, long_idempotent) == ("r" * 200, True)
    assert len(blank_id) == 36 and not blank_idempotent


def test_an_unexpected_error_logs_its_request_id(
    client: FlaskClient, users: FakeUsers, caplog: pytest.LogCaptureFixture
) -> None:
    users.fail = RuntimeError("boom")
    response = client.get("/users/a", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "trace-me"
    assert "trace-me" in caplog.text


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a", "fullName": "A"},
        {"username": "A.b_c-9", "fullName": "Zoë Ñúñez-O'Brien"},
        {"username": "u" * 100, "fullName": "f" * 100},
        {"username": "x", "fullName": "李小龍"},
    ],
    ids=["shortest", "all allowed characters", "longest", "non-latin name"],
)
def test_valid_bodies_are_accepted(client: FlaskClient, body: dict[str, Any]) -> None:
    assert client.post("/users", json=body).status_code == 201


INVALID: list[tuple[str, Any, set[str]]] = [
    ("missing both", {}, {"username", "fullName"}),
    ("username null", {"username": None, "fullName": "A"}, {"username"}),
    ("username a number", {"username": 7, "fullName": "A"}, {"username"}),
    ("username empty", {"username": "", "fullName": "A"}, {"username"}),
    ("username 101 chars", {"username": "u" * 101, "fullName": "A"}, {"username"}),
    ("username with slash", {"username": "a/b", "fullName": "A"}, {"username"}),
    ("username with space", {"username": "a b", "fullName": "A"}, {"username"}),
    ("username non-ascii", {"username": "zoë", "fullName": "A"}, {"username"}),
    ("username trailing newline", {"username": "abc\n", "fullName": "A"}, {"username"}),
    ("username a dot", {"username": ".", "fullName": "A"}, {"username"}),
    ("username two dots", {"username": "..", "fullName": "A"}, {"username"}),
    ("username only dots", {"username": "." * 100, "fullName": "A"}, {"username"}),
    ("fullName empty", {"username": "a", "fullName": ""}, {"fullName"}),
    ("fullName blank", {"username": "a", "fullName": "  \t "}, {"fullName"}),
    ("fullName 101 chars", {"username": "a", "fullName": "f" * 101}, {"fullName"}),
    ("fullName with NUL", {"username": "a", "fullName": "a\x00b"}, {"fullName"}),
    ("fullName with tab", {"username": "a", "fullName": "a\tb"}, {"fullName"}),
    ("fullName with DEL", {"username": "a", "fullName": "a\x7fb"}, {"fullName"}),
    ("fullName with RTL override", {"username": "a", "fullName": "a\u202eb"}, {"fullName"}),
    ("fullName a list", {"username": "a", "fullName": ["A"]}, {"fullName"}),
    ("snake_case key", {"username": "a", "full_name": "A"}, {"fullName", "full_name"}),
    ("extra field", {"username": "a", "fullName": "A", "role": "admin"}, {"role"}),
    ("array body", ["a", "A"], {""}),
    ("string body", "a", {""}),
    ("null body", None, {""}),
]


@pytest.mark.parametrize(("case", "body", "fields"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_bodies_are_422_naming_each_field_and_reach_no_store(
    client: FlaskClient, store: FakeStore, case: str, body: Any, fields: set[str]
) -> None:
    response = client.post("/users", data=orjson.dumps(body), content_type="application/json")
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert {detail["field"] for detail in error["details"]} == fields
    assert calls(store) == []


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"{", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"{}", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": b"{}"}, 415, "unsupported_media_type"),
        (
            {"data": b'{"username": "a", "fullName": "A"}', "content_type": "application/json"},
            201,
            None,
        ),
        (
            {
                "data": b'{"username": "a", "fullName": "A"}',
                "content_type": "application/json; charset=utf-8",
            },
            201,
            None,
        ),
        (
            {"data": b"x" * (17 * 1024), "content_type": "application/json"},
            413,
            "payload_too_large",
        ),
        (
            {"data": b'{"username": "a", "fullName": "A", "fullName": "B"}', **JSON},
            400,
            "duplicate_key",
        ),
        ({"data": b'{"username": "a", "x": {"k": 1, "k": 2}}', **JSON}, 400, "duplicate_key"),
        ({"data": b"[" * 1000 + b"]" * 1000, **JSON}, 400, "invalid_json"),
    ],
    ids=[
        "truncated",
        "empty",
        "not utf-8",
        "text/plain",
        "no content type",
        "plain json",
        "json with charset",
        "too large",
        "a key twice",
        "a key twice in a nested object",
        "nested a thousand deep",
    ],
)
def test_body_framing_errors_have_stable_codes(
    client: FlaskClient, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    response = client.post("/users", **kwargs)
    assert response.status_code == status
    if code is not None:
        assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    ("failure", "status", "code", "retry_after"),
    [
        (UsernameTaken("taken"), 409, "username_taken", False),
        (EventStoreUnavailable("down"), 503, "event_store_unavailable", True),
    ],
)
def test_store_failures_become_json_errors(
    client: FlaskClient,
    store: FakeStore,
    failure: Exception,
    status: int,
    code: str,
    retry_after: bool,
) -> None:
    store.fail = failure
    response = client.post("/users", json={"username": "a", "fullName": "A"})
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert ("Retry-After" in response.headers) == retry_after


def test_get_returns_the_four_fields_with_utc_iso_created_at(
    client: FlaskClient, users: FakeUsers
) -> None:
    created = datetime(2024, 5, 1, 14, 30, 1, 234567, tzinfo=UTC)
    users.rows["donald-le"] = User(7, "donald-le", created, "Donald Le", 0)
    response = client.get("/users/donald-le")
    assert response.status_code == 200
    assert response.json == {
        "id": 7,
        "username": "donald-le",
        "createdAt": "2024-05-01T14:30:01.234Z",
        "fullName": "Donald Le",
    }


def test_get_converts_a_non_utc_timestamp_to_utc(client: FlaskClient, users: FakeUsers) -> None:
    paris = datetime(2024, 5, 1, 16, 30, 1, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    users.rows["p"] = User(1, "p", paris, "P", 0)
    assert client.get("/users/p").json["createdAt"] == "2024-05-01T16:30:01.000Z"  # type: ignore[index]


@pytest.mark.parametrize(
    "path", ["/users/a%20b", "/users/abc%0A", "/users/zo%C3%AB", "/users/" + "u" * 101]
)
def test_get_of_an_impossible_username_is_404_without_a_query(
    client: FlaskClient, users: FakeUsers, path: str
) -> None:
    users.fail = AssertionError("the database must not be asked")
    response = client.get(path)
    assert response.status_code == 404
    assert error_of(response)["code"] == "user_not_found"


def test_get_with_the_database_down_is_503_with_retry_after(
    client: FlaskClient, users: FakeUsers
) -> None:
    users.fail = DatabaseUnavailable("down")
    response = client.get("/users/someone")
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert error_of(response)["code"] == "database_unavailable"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/nope", 404, "not_found"),
        ("get", "/users", 405, "method_not_allowed"),
        ("post", "/users/a", 405, "method_not_allowed"),
        ("put", "/users/a", 405, "method_not_allowed"),
        ("put", "/users", 405, "method_not_allowed"),
        ("post", "/health", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_json(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert error_of(response)["code"] == code
    if status == 405:
        assert response.headers["Allow"]


@pytest.mark.parametrize(
    "explode",
    [
        lambda store, users: setattr(users, "fail", RuntimeError("password=hunter2")),
        lambda store, users: setattr(store, "fail", KeyError("password=hunter2")),
    ],
    ids=["on GET", "on POST"],
)
def test_an_unexpected_error_is_500_and_leaks_nothing_but_is_logged(
    client: FlaskClient,
    store: FakeStore,
    users: FakeUsers,
    caplog: pytest.LogCaptureFixture,
    explode: Callable[[FakeStore, FakeUsers], None],
) -> None:
    explode(store, users)
    response = (
        client.get("/users/a")
        if users.fail
        else client.post("/users", json={"username": "a", "fullName": "A"})
    )
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "internal_error", "message": "internal error; it has been logged"}
    }
    assert b"hunter2" not in response.data and b"Traceback" not in response.data
    assert "hunter2" in caplog.text
    assert any(record.exc_info for record in caplog.records)


def now_minus(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("head", "checkpoint", "status", "projection"),
    [
        # (head, (checkpoint position, seconds since it moved) or None, ...): the age is
        # turned into a time when the test runs, not when it is collected.
        (0, None, 200, "caught_up"),
        (500, (500, 3600), 200, "caught_up"),
        (900, (500, 1), 200, "behind"),
        (900, (500, Settings().health_stall_seconds + 5), 503, "stalled"),
        (900, None, 503, "stalled"),
    ],
    ids=["empty", "caught up long ago", "behind but moving", "behind and still", "never ran"],
)
def test_health_reports_the_projection(
    client: FlaskClient,
    store: FakeStore,
    users: FakeUsers,
    head: int,
    checkpoint: tuple[int, float] | None,
    status: int,
    projection: str,
) -> None:
    store.head = head
    users.saved = (
        None if checkpoint is None else Checkpoint(checkpoint[0], now_minus(checkpoint[1]))
    )
    response = client.get("/health")
    assert response.status_code == status
    body = response.json
    assert body is not None
    assert body["checks"]["projection"]["status"] == projection
    assert body["checks"]["eventStore"]["headPosition"] == head
    assert (body["problems"] == ["projection_stalled"]) == (status == 503)


def test_health_is_503_naming_each_dependency_down(
    client: FlaskClient, store: FakeStore, users: FakeUsers
) -> None:
    store.head_fail = EventStoreUnavailable("esdb gone")
    users.fail = DatabaseUnavailable("pg gone")
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json
    assert body is not None
    assert body["status"] == "failing"
    assert body["problems"] == ["event_store_unavailable", "database_unavailable"]
    assert body["checks"]["eventStore"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "down"
    assert "projection" not in body["checks"]

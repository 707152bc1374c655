"""Faults answered over HTTP (fakes under the real adapters): a failed append says that its outcome
is unknown and how to retry; `Idempotency-Key`; no driver text in any answer; the probes'
start-up grace and a checkpoint past the store's head."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from esdbclient import NewEvent
from flask import Flask

from service.app import create_app
from service.errors import AppendOutcomeUnknown
from service.retries import event_id
from service.users import Checkpoint, UserRepository
from tests.fixtures.esdb_client_fake import FakeClient, grpc_failure, store_with
from tests.fixtures.service_fakes import FakePool, FakeUsers, MemoryStore
from usersvc.events import UserCreated, decode_event
from usersvc.settings import Settings

BODY = {"username": "ann", "fullName": "Ann Lee"}
# What drivers say and no answer may repeat: addresses, server messages, gRPC debug strings.
SECRETS = ("10.0.0.7", "2113", "5432", "debug_error_string", "password", "svc_user")


def app_with(**collaborators: Any) -> Flask:
    settings = Settings(health_startup_grace=collaborators.pop("grace", 0))
    collaborators.setdefault("users", FakeUsers())
    return create_app(settings, verifier=None, **collaborators)


def error_of(response: Any) -> dict[str, Any]:
    assert response.is_json, response.data
    assert list(response.json) == ["error"]
    error: dict[str, Any] = response.json["error"]
    return error


def leaks(response: Any) -> list[str]:
    return [secret for secret in SECRETS if secret in response.get_data(as_text=True)]


class LostAnswer(MemoryStore):
    """A store whose first append is written but answered with a failure, as when EventStoreDB
    wrote the event and the channel closed before its answer came back."""

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        position = super().append(stream, expected, event)
        if len(self.appended) == 1:
            raise AppendOutcomeUnknown("lost") from ValueError("Channel closed!")
        return position


@pytest.mark.parametrize(
    "failure",
    [
        grpc_failure(grpc.StatusCode.CANCELLED, "Channel closed!"),
        ValueError("Cannot invoke RPC on closed channel!"),
        grpc_failure(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        grpc_failure(grpc.StatusCode.UNAVAILABLE, "ipv4:10.0.0.7:2113: Connection refused"),
        grpc_failure(grpc.StatusCode.INTERNAL, "debug_error_string at 10.0.0.7:2113"),
    ],
    ids=["channel closed", "call on a closed channel", "deadline", "unavailable", "internal"],
)
def test_a_failed_append_is_503_outcome_unknown_never_500_and_logs_its_cause(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_with(event_store=store_with(FakeClient(fail=failure))).test_client()
    response = client.post("/users", json=BODY, headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert error_of(response)["code"] == "append_outcome_unknown"
    assert leaks(response) == []
    logged = [r.getMessage() for r in caplog.records if "trace-me" in r.getMessage()]
    assert len(logged) == 1
    assert type(failure).__name__ in logged[0]


def test_the_outcome_unknown_answer_says_to_retry_with_the_same_key() -> None:
    client = app_with(event_store=LostAnswer()).test_client()
    response = client.post("/users", json=BODY, headers={"Idempotency-Key": '"k-1"'})
    message = error_of(response)["message"]
    assert "may or may not have been made" in message
    assert "same Idempotency-Key" in message


def test_the_outcome_unknown_answer_without_a_key_says_to_send_the_same_body_soon() -> None:
    client = app_with(event_store=LostAnswer()).test_client()
    message = error_of(client.post("/users", json=BODY))["message"]
    assert "send the same body again within 300 s" in message


@pytest.mark.parametrize(
    "headers",
    [{"Idempotency-Key": '"k-1"'}, {"X-Request-ID": "k-1"}, {}],
    ids=["Idempotency-Key", "X-Request-ID", "no key"],
)
def test_a_retry_after_an_unknown_outcome_that_was_written_answers_201_once(
    headers: dict[str, str],
) -> None:
    store = LostAnswer()
    client = app_with(event_store=store).test_client()
    assert client.post("/users", json=BODY, headers=headers).status_code == 503
    retried = client.post("/users", json=BODY, headers=headers)
    assert retried.status_code == 201
    assert retried.json == {"username": "ann", "commitPosition": 1001, "streamRevision": 0}
    assert len(store.streams["user-ann"]) == 1


@pytest.mark.parametrize(
    ("header", "key"),
    [('"k-1"', "k-1"), ("k-1", "k-1"), ('"a \\"quoted\\" key"', 'a "quoted" key')],
    ids=["structured string", "bare", "escapes"],
)
def test_the_idempotency_key_names_the_event_and_wins_over_the_request_id(
    header: str, key: str
) -> None:
    store = MemoryStore()
    client = app_with(event_store=store).test_client()
    response = client.post(
        "/users", json=BODY, headers={"Idempotency-Key": header, "X-Request-ID": "r-1"}
    )
    assert response.status_code == 201
    ((_, _, event),) = store.appended
    user = decode_event(event.type, event.data, event.metadata)
    assert isinstance(user, UserCreated)
    assert event.id == event_id(user, key)
    assert response.headers["X-Request-ID"] == "r-1"


@pytest.mark.parametrize(
    "header",
    ['""', '"unterminated', "two words", "zoë", "k" * 201],
    ids=["empty", "unterminated", "space", "not ascii", "too long"],
)
def test_a_malformed_idempotency_key_is_400_and_writes_nothing(header: str) -> None:
    store = MemoryStore()
    client = app_with(event_store=store).test_client()
    response = client.post("/users", json=BODY, headers={"Idempotency-Key": header})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_idempotency_key"
    assert store.appended == []


def test_postgresql_messages_reach_the_log_but_no_answer(caplog: pytest.LogCaptureFixture) -> None:
    failure = psycopg.OperationalError(
        'connection to server at "10.0.0.7", port 5432 failed: FATAL:  password '
        'authentication failed for user "svc_user"'
    )
    users = UserRepository(FakePool(fail=failure), "s")  # type: ignore[arg-type]
    client = app_with(event_store=MemoryStore(), users=users).test_client()
    got = client.get("/users/ann", headers={"X-Request-ID": "trace-get"})
    health = client.get("/health", headers={"X-Request-ID": "trace-health"})
    assert (got.status_code, health.status_code) == (503, 503)
    assert error_of(got)["code"] == "database_unavailable"
    assert health.json is not None
    assert health.json["checks"]["database"]["status"] == "down"
    assert (leaks(got), leaks(health)) == ([], [])
    for trace in ("trace-get", "trace-health"):
        (line,) = [r.getMessage() for r in caplog.records if trace in r.getMessage()]
        assert "10.0.0.7" in line


def test_grpc_debug_strings_reach_the_log_but_not_health(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = grpc_failure(grpc.StatusCode.UNAVAILABLE, "ipv4:10.0.0.7:2113: Connection refused")
    client = app_with(event_store=store_with(FakeClient(fail=failure))).test_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json is not None
    assert health.json["problems"] == ["event_store_unavailable"]
    assert leaks(health) == []
    assert "10.0.0.7" in caplog.text


def _checkpoint(position: int, seconds_ago: float) -> Checkpoint:
    return Checkpoint(position, datetime.now(UTC) - timedelta(seconds=seconds_ago))


def test_a_projection_behind_at_start_up_is_starting_not_stalled() -> None:
    users = FakeUsers(saved=_checkpoint(500, 3600))
    client = app_with(event_store=MemoryStore(head=900), users=users, grace=60).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["checks"]["projection"]["status"] == "starting"
    assert response.json["problems"] == []


def test_a_projection_that_never_ran_is_starting_during_the_grace() -> None:
    client = app_with(event_store=MemoryStore(head=900), grace=60).test_client()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["checks"]["projection"]["status"] == "starting"


@pytest.mark.parametrize("path", ["/health", "/readyz"])
def test_a_checkpoint_past_the_newest_event_of_all_fails_naming_it(path: str) -> None:
    store = MemoryStore(head=900, all_head=950)
    client = app_with(event_store=store, users=FakeUsers(saved=_checkpoint(2000, 1))).test_client()
    response = client.get(path)
    assert response.status_code == 503
    body = response.json
    assert body is not None
    assert body["problems"] == ["checkpoint_ahead_of_store"]
    assert body["checks"]["projection"]["status"] == "ahead"
    assert body["checks"]["projection"]["allHeadPosition"] == 950


def test_a_checkpoint_past_the_newest_user_event_but_not_past_all_is_caught_up() -> None:
    # The worker moves its checkpoint over other streams' events too (server checkpoints).
    store = MemoryStore(head=900, all_head=2500)
    client = app_with(event_store=store, users=FakeUsers(saved=_checkpoint(2000, 1))).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["checks"]["projection"]["status"] == "caught_up"

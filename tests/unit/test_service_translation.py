"""esdbclient and psycopg exceptions become service errors in their adapters, and only there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
from esdbclient import NewEvent, RecordedEvent, StreamState
from esdbclient.exceptions import (
    AbortedByServer,
    AccessDeniedError,
    DeadlineExceeded,
    DiscoveryFailed,
    EventStoreDBClientException,
    FailedPrecondition,
    GrpcDeadlineExceeded,
    GrpcError,
    InternalError,
    NodeIsNotLeader,
    ServiceUnavailable,
    StreamIsDeleted,
    WrongCurrentVersion,
)
from psycopg_pool import PoolTimeout

from service.errors import DatabaseUnavailable, EventStoreUnavailable, UsernameTaken
from service.event_store import HEALTH_TIMEOUT, EventStore, event_id, translate
from service.users import UserRepository
from usersvc.events import UserCreated

USER = UserCreated("donald-le", "Donald Le", datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


class FakeClient:
    def __init__(self, fail: Exception | None = None, position: int = 4242) -> None:
        self.fail = fail
        self.position = position
        self.appends: list[dict[str, Any]] = []
        self.recorded: list[RecordedEvent] = []
        self.head_timeouts: list[float | None] = []
        self.closed = False

    def append_to_stream(
        self,
        stream_name: str,
        *,
        current_version: int | StreamState,
        events: NewEvent | Sequence[NewEvent],
        timeout: float | None = None,
    ) -> int:
        self.appends.append(
            {
                "stream": stream_name,
                "version": current_version,
                "events": events,
                "timeout": timeout,
            }
        )
        if self.fail is not None:
            raise self.fail
        return self.position

    def get_commit_position(
        self,
        *,
        filter_exclude: Sequence[str] = (),
        filter_include: Sequence[str] = (),
        filter_by_stream_name: bool = False,
        timeout: float | None = None,
    ) -> int:
        if self.fail is not None:
            raise self.fail
        assert list(filter_include) == ["user-.*"] and filter_by_stream_name
        self.head_timeouts.append(timeout)
        return self.position

    def get_stream(
        self, stream_name: str, *, limit: int = 1, timeout: float | None = None
    ) -> Sequence[RecordedEvent]:
        return self.recorded

    def close(self) -> None:
        self.closed = True


def store_with(client: FakeClient, timeout: float = 1.5) -> EventStore:
    return EventStore("esdb://x:1?tls=false", timeout, client_factory=lambda uri: client)


def test_the_append_expects_no_stream_with_the_contract_event_within_the_timeout() -> None:
    client = FakeClient()
    appended = store_with(client).create_user(USER, "corr-1")
    assert (appended.commit_position, appended.stream_revision) == (4242, 0)
    (call,) = client.appends
    assert call["stream"] == "user-donald-le"
    assert call["version"] is StreamState.NO_STREAM
    # esdbclient retries a failed call once: two attempts fit in the configured timeout.
    assert call["timeout"] == 0.75
    event = call["events"]
    assert event.type == "user-created"
    assert event.content_type == "application/json"
    assert orjson.loads(event.data) == {
        "username": "donald-le",
        "fullName": "Donald Le",
        "openedAt": "2024-05-01T12:00:00.000Z",
    }
    assert orjson.loads(event.metadata) == {"schemaVersion": 1, "correlationId": "corr-1"}


def recorded(event_id: Any, position: int) -> RecordedEvent:
    return RecordedEvent(
        type="user-created",
        data=b"{}",
        metadata=b"{}",
        content_type="application/json",
        id=event_id,
        stream_name="user-donald-le",
        stream_position=0,
        commit_position=position,
        prepare_position=position,
    )


def test_a_conflict_with_our_own_timed_out_attempt_is_a_success() -> None:
    client = FakeClient(fail=WrongCurrentVersion("exists"))

    def ours(stream_name: str, **kwargs: Any) -> list[RecordedEvent]:
        return [recorded(client.appends[-1]["events"].id, 999)]

    client.get_stream = ours  # type: ignore[method-assign]
    assert store_with(client).create_user(USER, "c").commit_position == 999


def test_a_conflict_with_another_event_is_username_taken() -> None:
    client = FakeClient(fail=WrongCurrentVersion("exists"))
    client.recorded = [recorded(uuid.uuid4(), 5)]
    with pytest.raises(UsernameTaken):
        store_with(client).create_user(USER, "c")


def test_each_append_has_its_own_event_id() -> None:
    client = FakeClient()
    store = store_with(client)
    store.create_user(USER, "a")
    store.create_user(USER, "b")
    assert client.appends[0]["events"].id != client.appends[1]["events"].id


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (WrongCurrentVersion("stream exists"), UsernameTaken),
        (StreamIsDeleted("gone"), UsernameTaken),
        (FailedPrecondition("Stream 'user-x' is deleted"), UsernameTaken),
        (ServiceUnavailable("connection refused"), EventStoreUnavailable),
        (DeadlineExceeded("slow"), EventStoreUnavailable),
        (GrpcDeadlineExceeded("slow"), EventStoreUnavailable),
        (DiscoveryFailed("no gossip"), EventStoreUnavailable),
        (NodeIsNotLeader("follower"), EventStoreUnavailable),
        (AbortedByServer("aborted"), EventStoreUnavailable),
        (GrpcError("StatusCode.UNAVAILABLE: socket closed"), EventStoreUnavailable),
        (GrpcError("StatusCode.RESOURCE_EXHAUSTED"), EventStoreUnavailable),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_esdbclient_exceptions_are_translated(
    raised: EventStoreDBClientException, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught:
        store_with(FakeClient(fail=raised)).create_user(USER, "c")
    assert caught.value.__cause__ is raised


@pytest.mark.parametrize(
    "raised",
    [
        InternalError("server bug"),
        AccessDeniedError("no"),
        FailedPrecondition("something else"),
        GrpcError("StatusCode.INVALID_ARGUMENT"),
    ],
    ids=lambda value: f"{type(value).__name__}: {value}",
)
def test_other_esdbclient_exceptions_stay_errors_for_a_500(
    raised: EventStoreDBClientException,
) -> None:
    assert translate(raised, "x") is raised
    with pytest.raises(type(raised)):
        store_with(FakeClient(fail=raised)).create_user(USER, "c")


def test_a_client_that_cannot_be_built_is_unavailable_and_retried_next_time() -> None:
    attempts: list[str] = []
    good = FakeClient()

    def factory(uri: str) -> FakeClient:
        attempts.append(uri)
        if len(attempts) == 1:
            raise ServiceUnavailable("down at start-up")
        return good

    store = EventStore("esdb://x:1?tls=false", 1.0, client_factory=factory)
    with pytest.raises(EventStoreUnavailable):
        store.create_user(USER, "c")
    assert store.create_user(USER, "c").commit_position == 4242
    assert len(attempts) == 2


def test_head_position_reads_this_services_streams_and_any_failure_is_unavailable() -> None:
    assert store_with(FakeClient(position=77)).head_position() == 77
    with pytest.raises(EventStoreUnavailable):
        store_with(FakeClient(fail=InternalError("boom"))).head_position()


def test_head_position_waits_at_most_the_health_timeout_in_all() -> None:
    # esdbclient makes two attempts: each gets half of the smaller of the two budgets.
    for esdb_timeout, per_attempt in [(10.0, HEALTH_TIMEOUT / 2), (0.5, 0.25)]:
        client = FakeClient()
        store_with(client, timeout=esdb_timeout).head_position()
        assert client.head_timeouts == [per_attempt]


def test_close_closes_the_client_once_built() -> None:
    client = FakeClient()
    store = store_with(client)
    store.close()
    assert not client.closed
    store.head_position()
    store.close()
    assert client.closed


class FakePool:
    def __init__(self, fail: Exception | None = None, row: tuple[Any, ...] | None = None) -> None:
        self.fail = fail
        self.row = row
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        if self.fail is not None:
            raise self.fail
        pool = self

        class Conn:
            def execute(self, query: Any, params: tuple[Any, ...]) -> Any:
                pool.queries.append((query.as_string(None), params))

                class Cursor:
                    def fetchone(self) -> tuple[Any, ...] | None:
                        return pool.row

                return Cursor()

        yield Conn()


@pytest.mark.parametrize(
    "raised",
    [PoolTimeout("no connection"), psycopg.OperationalError("server closed the connection")],
    ids=["pool timeout", "operational error"],
)
def test_postgresql_failures_are_database_unavailable(raised: Exception) -> None:
    repo = UserRepository(FakePool(fail=raised), "s")  # type: ignore[arg-type]
    with pytest.raises(DatabaseUnavailable):
        repo.get("a")
    with pytest.raises(DatabaseUnavailable):
        repo.checkpoint("w")


def test_a_programming_error_in_sql_is_not_disguised_as_unavailable() -> None:
    repo = UserRepository(FakePool(fail=psycopg.errors.UndefinedTable("no table")), "s")  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.UndefinedTable):
        repo.get("a")


def test_the_repository_queries_the_schema_table_by_username() -> None:
    created = datetime(2024, 5, 1, tzinfo=UTC)
    pool = FakePool(row=(3, "ann", created, "Ann"))
    user = UserRepository(pool, "my_schema").get("ann")  # type: ignore[arg-type]
    assert user is not None and (user.id, user.full_name) == (3, "Ann")
    query, params = pool.queries[0]
    assert '"my_schema"."user"' in query and params == ("ann",)


def test_a_request_id_gives_a_stable_event_id_for_the_same_request_only() -> None:
    client = FakeClient()
    store = store_with(client)
    store.create_user(USER, "req-1", idempotent=True)
    store.create_user(USER, "req-1", idempotent=True)
    store.create_user(USER, "req-2", idempotent=True)
    store.create_user(UserCreated("donald-le", "Other", USER.opened_at), "req-1", idempotent=True)
    ids = [call["events"].id for call in client.appends]
    assert ids[0] == ids[1] == event_id(USER, "req-1")
    assert len({ids[0], ids[2], ids[3]}) == 3

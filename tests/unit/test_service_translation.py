"""esdbclient and psycopg exceptions become service errors in their adapters, and only there."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

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
    NotFound,
    ServiceUnavailable,
    StreamIsDeleted,
    WrongCurrentVersion,
)
from psycopg_pool import PoolTimeout

from service.errors import DatabaseUnavailable, EventStoreUnavailable
from service.event_store import HEALTH_TIMEOUT, EventStore, StreamConflict, translate
from service.users import UserRepository

NEW = NewEvent(type="user-created", data=b"{}", metadata=b"{}", content_type="application/json")


class FakeClient:
    def __init__(self, fail: Exception | None = None, position: int = 4242) -> None:
        self.fail = fail
        self.position = position
        self.appends: list[dict[str, Any]] = []
        self.recorded: list[RecordedEvent] = []
        self.reads: list[dict[str, Any]] = []
        self.metadata: dict[str, Any] = {}
        self.metadata_version: int | StreamState = StreamState.NO_STREAM
        self.metadata_writes: list[dict[str, Any]] = []
        # Raised by the next metadata writes, one each, before they succeed.
        self.metadata_races: list[Exception] = []
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
        self,
        stream_name: str,
        *,
        stream_position: int | None = None,
        timeout: float | None = None,
    ) -> Sequence[RecordedEvent]:
        self.reads.append({"stream": stream_name, "from": stream_position, "timeout": timeout})
        if self.fail is not None:
            raise self.fail
        return self.recorded

    def get_stream_metadata(
        self, stream_name: str, *, timeout: float | None = None
    ) -> tuple[dict[str, Any], int | Literal[StreamState.NO_STREAM]]:
        if self.fail is not None:
            raise self.fail
        version = self.metadata_version
        assert isinstance(version, int) or version is StreamState.NO_STREAM
        return dict(self.metadata), version

    def set_stream_metadata(
        self,
        stream_name: str,
        *,
        metadata: dict[str, Any],
        current_version: int | StreamState = StreamState.ANY,
        timeout: float | None = None,
    ) -> None:
        self.metadata_writes.append(
            {"stream": stream_name, "metadata": metadata, "version": current_version}
        )
        if self.metadata_races:
            raise self.metadata_races.pop(0)
        assert current_version == self.metadata_version
        self.metadata = metadata
        self.metadata_version = (
            0 if self.metadata_version is StreamState.NO_STREAM else self.metadata_version + 1
        )

    def close(self) -> None:
        self.closed = True


def store_with(client: FakeClient, timeout: float = 1.5) -> EventStore:
    return EventStore("esdb://x:1?tls=false", timeout, client_factory=lambda uri: client)


@pytest.mark.parametrize(("expected", "sent"), [(None, StreamState.NO_STREAM), (4, 4)])
def test_the_append_expects_the_revision_given_within_the_timeout(
    expected: int | None, sent: int | StreamState
) -> None:
    client = FakeClient()
    assert store_with(client).append("user-donald-le", expected, NEW) == 4242
    (call,) = client.appends
    assert call["stream"] == "user-donald-le"
    assert call["version"] == sent
    assert call["events"] is NEW
    # esdbclient retries a failed call once: two attempts fit in the configured timeout.
    assert call["timeout"] == 0.75


@pytest.mark.parametrize("missing", [NotFound("no stream"), StreamIsDeleted("tombstoned")])
def test_reading_a_missing_or_tombstoned_stream_gives_no_events(missing: Exception) -> None:
    client = FakeClient(fail=missing)
    assert store_with(client).read("user-x") == []
    assert store_with(client).read_from("user-x", 3) is None
    assert client.reads == [
        {"stream": "user-x", "from": None, "timeout": 0.75},
        {"stream": "user-x", "from": 3, "timeout": 0.75},
    ]


def test_truncation_keeps_the_other_metadata_and_expects_the_metadata_revision_read() -> None:
    client = FakeClient()
    client.metadata = {"$maxAge": 86400, "$tb": 1}
    client.metadata_version = 3
    assert store_with(client).truncate_before("user-x", 5)
    assert client.metadata_writes == [
        {"stream": "user-x", "metadata": {"$maxAge": 86400, "$tb": 5}, "version": 3}
    ]


@pytest.mark.parametrize("already", [5, 9])
def test_truncation_never_moves_tb_back_and_says_it_changed_nothing(already: int) -> None:
    client = FakeClient()
    client.metadata = {"$tb": already}
    client.metadata_version = 0
    assert not store_with(client).truncate_before("user-x", 5)
    assert client.metadata_writes == []


def test_truncation_reads_again_when_the_metadata_moved_meanwhile() -> None:
    client = FakeClient()
    client.metadata_races = [WrongCurrentVersion("moved")]
    assert store_with(client).truncate_before("user-x", 2)
    assert len(client.metadata_writes) == 2
    assert client.metadata == {"$tb": 2}


def test_truncation_that_keeps_racing_is_unavailable_not_a_lie() -> None:
    client = FakeClient()
    client.metadata_races = [WrongCurrentVersion("moved")] * 10
    with pytest.raises(EventStoreUnavailable):
        store_with(client).truncate_before("user-x", 2)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (WrongCurrentVersion("stream exists"), StreamConflict),
        (StreamIsDeleted("gone"), StreamConflict),
        (FailedPrecondition("Stream 'user-x' is deleted"), StreamConflict),
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
def test_esdbclient_exceptions_of_an_append_are_translated(
    raised: EventStoreDBClientException, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught:
        store_with(FakeClient(fail=raised)).append("user-x", None, NEW)
    assert caught.value.__cause__ is raised


@pytest.mark.parametrize(
    "raised", [ServiceUnavailable("connection refused"), DeadlineExceeded("slow")]
)
def test_an_outage_while_reading_or_truncating_is_unavailable(
    raised: EventStoreDBClientException,
) -> None:
    store = store_with(FakeClient(fail=raised))
    with pytest.raises(EventStoreUnavailable):
        store.read("user-x")
    with pytest.raises(EventStoreUnavailable):
        store.truncate_before("user-x", 1)


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
    assert translate(raised) is raised
    with pytest.raises(type(raised)):
        store_with(FakeClient(fail=raised)).append("user-x", None, NEW)


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
        store.append("user-x", None, NEW)
    assert store.append("user-x", None, NEW) == 4242
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
    pool = FakePool(row=(3, "ann", created, "Ann", 2))
    user = UserRepository(pool, "my_schema").get("ann")  # type: ignore[arg-type]
    assert user is not None and (user.id, user.full_name, user.revision) == (3, "Ann", 2)
    query, params = pool.queries[0]
    assert '"my_schema"."user"' in query and params == ("ann",)

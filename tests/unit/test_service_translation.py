"""esdbclient and psycopg exceptions become service errors in their adapters, and only there."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import esdbclient.exceptions
import grpc
import psycopg
import pytest
from esdbclient import NewEvent, StreamState
from esdbclient.exceptions import (
    EventStoreDBClientException,
    FailedPrecondition,
    InternalError,
    NotFound,
    ProgrammingError,
    ServiceUnavailable,
    StreamIsDeleted,
    WrongCurrentVersion,
)
from psycopg_pool import PoolTimeout

from service.errors import AppendOutcomeUnknown, DatabaseUnavailable, EventStoreUnavailable
from service.event_store import HEALTH_TIMEOUT, EventStore
from service.store_errors import UNKNOWN_OUTCOME_MESSAGE, StreamConflict, translate
from service.users import UserRepository
from tests.fixtures.esdb_client_fake import FakeClient, RpcFailure, grpc_failure, store_with
from tests.fixtures.service_fakes import FakePool

NEW = NewEvent(type="user-created", data=b"{}", metadata=b"{}", content_type="application/json")
CONFLICTS = (WrongCurrentVersion, StreamIsDeleted)
# What the stream reads take as "no events" rather than a failure.
MISSING = (NotFound, StreamIsDeleted)


def _every_client_exception() -> list[Exception]:
    """One instance of each of esdbclient's exception classes, but the conflicts and NotFound."""
    classes = [
        cls
        for _, cls in inspect.getmembers(esdbclient.exceptions, inspect.isclass)
        if issubclass(cls, EventStoreDBClientException) and not issubclass(cls, CONFLICTS + MISSING)
    ]
    assert len(classes) > 25, "esdbclient's exception classes were not found"
    return [cls("failed at 10.0.0.7:2113") for cls in classes]


# Statuses that are no failure of a call (NOT_FOUND: no stream to read).
NO_FAILURE = (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
# Every failure a call of the client can end with, but a conflict or a missing stream: each of
# esdbclient's classes; each gRPC status as esdbclient converts it; a raw gRPC error; and the
# ValueError grpc raises for a call on a channel closed by another thread's reconnection.
OTHER_CLIENT_FAILURES: list[Exception] = [
    *_every_client_exception(),
    *(
        grpc_failure(code)
        for code in grpc.StatusCode
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
    ),
    grpc_failure(grpc.StatusCode.CANCELLED, "Channel closed!"),
    RpcFailure(grpc.StatusCode.UNAVAILABLE, "ipv4:10.0.0.7:2113: connection refused"),
    ValueError("Cannot invoke RPC: Channel closed!"),
    ValueError("Cannot invoke RPC on closed channel!"),
]


def _name(value: Exception) -> str:
    code = getattr(value, "code", None)
    status = f" {code().name}" if callable(code) else ""
    return f"{type(value).__name__}{status}: {value}"[:80]


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


def test_conflicts_of_an_append_are_stream_conflicts_for_the_commands() -> None:
    for raised in (
        WrongCurrentVersion("stream exists"),
        StreamIsDeleted("gone"),
        FailedPrecondition("Stream 'user-x' is deleted"),
    ):
        with pytest.raises(StreamConflict) as caught:
            store_with(FakeClient(fail=raised)).append("user-x", None, NEW)
        assert caught.value.__cause__ is raised


@pytest.mark.parametrize("raised", OTHER_CLIENT_FAILURES, ids=_name)
def test_every_other_failure_of_an_append_is_503_outcome_unknown(raised: Exception) -> None:
    with pytest.raises(AppendOutcomeUnknown) as caught:
        store_with(FakeClient(fail=raised)).append("user-x", None, NEW)
    assert caught.value.status == 503
    assert caught.value.headers()["Retry-After"]
    assert caught.value.__cause__ is raised
    assert caught.value.code == "append_outcome_unknown"
    assert caught.value.message == UNKNOWN_OUTCOME_MESSAGE


@pytest.mark.parametrize("raised", OTHER_CLIENT_FAILURES, ids=_name)
def test_every_other_failure_of_a_read_or_truncation_is_503_unavailable(raised: Exception) -> None:
    store = store_with(FakeClient(fail=raised))
    for call in (lambda: store.read("user-x"), lambda: store.truncate_before("user-x", 1)):
        with pytest.raises(EventStoreUnavailable) as caught:
            call()
        assert type(caught.value) is EventStoreUnavailable
        assert caught.value.code == "event_store_unavailable"
        assert caught.value.message == "EventStoreDB is unavailable; retry shortly"


@pytest.mark.parametrize("raised", [ProgrammingError("a bug"), ValueError("a bug")], ids=_name)
def test_programming_errors_stay_errors_for_a_500(raised: Exception) -> None:
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


def test_all_position_reads_the_newest_event_of_all_unfiltered() -> None:
    client = FakeClient(position=77)
    client.all_position = 90
    assert store_with(client).all_position() == 90
    with pytest.raises(EventStoreUnavailable):
        store_with(FakeClient(fail=ValueError("Channel closed!"))).all_position()


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

"""Append (single and batch) with every expected-version variant, idempotency, stream reads."""

from __future__ import annotations

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import (
    GrpcError,
    MaximumAppendSizeExceededError,
    NotFound,
    WrongCurrentVersion,
)

from tests.fixtures.esdb_events import event, events


def test_reading_a_missing_stream_raises_not_found(client: EventStoreDBClient, stream: str) -> None:
    with pytest.raises(NotFound):
        client.get_stream(stream)
    assert client.get_current_version(stream) is StreamState.NO_STREAM


def test_append_with_no_stream_then_exact_revision_assigns_revisions_and_positions(
    client: EventStoreDBClient, stream: str
) -> None:
    first = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())
    second = client.append_to_stream(stream, current_version=0, events=events(2))
    assert 0 < first < second
    recorded = client.get_stream(stream)
    assert [e.stream_position for e in recorded] == [0, 1, 2]
    assert recorded[-1].commit_position == second
    assert all(e.commit_position == e.prepare_position for e in recorded)
    assert recorded[0].commit_position == first
    assert recorded[0].content_type == "application/json"
    assert recorded[0].metadata == b'{"m":1}'
    assert recorded[0].recorded_at is not None


def test_binary_content_type_round_trips(client: EventStoreDBClient, stream: str) -> None:
    new = NewEvent(type="Blob", data=b"\x00\xff", content_type="application/octet-stream")
    client.append_to_stream(stream, current_version=StreamState.ANY, events=new)
    (recorded,) = client.get_stream(stream)
    assert (recorded.type, recorded.data, recorded.content_type) == (
        "Blob",
        b"\x00\xff",
        "application/octet-stream",
    )
    assert recorded.id == new.id


@pytest.mark.parametrize("batch", [False, True], ids=["append", "batch_append"])
def test_wrong_expected_versions_say_the_actual_version(
    client: EventStoreDBClient, stream: str, batch: bool
) -> None:
    def append(version: int | StreamState) -> int:
        payload = [event()] if batch else event()
        return client.append_to_stream(stream, current_version=version, events=payload)

    with pytest.raises(WrongCurrentVersion, match="does not exist"):
        append(0)
    with pytest.raises(WrongCurrentVersion, match="does not exist"):
        append(StreamState.EXISTS)
    append(StreamState.NO_STREAM)
    with pytest.raises(WrongCurrentVersion, match="is 0 not"):
        append(StreamState.NO_STREAM)
    with pytest.raises(WrongCurrentVersion, match="is 0 not"):
        append(5)
    assert append(StreamState.EXISTS) > 0
    assert append(StreamState.ANY) > 0
    assert client.get_current_version(stream) == 2


def test_re_appending_the_same_events_is_idempotent(
    client: EventStoreDBClient, stream: str
) -> None:
    e1, e2, e3, e4 = events(4)
    p1 = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    p3 = client.append_to_stream(stream, current_version=0, events=[e2, e3])
    assert client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=e1) == p1
    assert client.append_to_stream(stream, current_version=0, events=[e2, e3]) == p3
    assert client.append_to_stream(stream, current_version=StreamState.ANY, events=[e2, e3]) == p3
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=0, events=[e2, e3, e4])
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=[e1, e4])
    assert client.get_current_version(stream) == 2


def test_stream_reads_go_both_ways_from_a_revision_with_a_limit(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(10))

    def revisions(**kwargs: object) -> list[int]:
        return [e.stream_position for e in client.get_stream(stream, **kwargs)]  # type: ignore[arg-type]

    assert revisions() == list(range(10))
    assert revisions(stream_position=7) == [7, 8, 9]
    assert revisions(stream_position=2, limit=3) == [2, 3, 4]
    assert revisions(backwards=True, limit=3) == [9, 8, 7]
    assert revisions(stream_position=4, backwards=True) == [4, 3, 2, 1, 0]
    assert revisions(stream_position=20) == []


def test_an_append_over_one_mebibyte_is_refused_and_writes_nothing(
    client: EventStoreDBClient, stream: str
) -> None:
    big = NewEvent(
        type="Big", data=b"x" * (1024 * 1024 + 1), content_type="application/octet-stream"
    )
    with pytest.raises(MaximumAppendSizeExceededError):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=[big])
    # The single-event Append path has no typed error in esdbclient: a plain GrpcError.
    with pytest.raises(GrpcError, match="Maximum Append Size of 1048576 Exceeded"):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=big)
    assert client.get_current_version(stream) is StreamState.NO_STREAM


def test_an_empty_append_changes_nothing(client: EventStoreDBClient, stream: str) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(1))
    client.append_to_stream(stream, current_version=0, events=[])
    assert client.get_current_version(stream) == 0

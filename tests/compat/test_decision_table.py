"""The rows of the expected-version decision table (protocol notes §4) that involve soft-deleted
streams, idempotency under `StreamState.EXISTS`, and the exact size limit."""

from __future__ import annotations

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import FailedPrecondition, StreamIsDeleted, WrongCurrentVersion

from tests.fixtures.esdb_events import event, events


def soft_deleted(client: EventStoreDBClient, stream: str, count: int) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(count))
    client.set_stream_metadata(stream, metadata={"owner": "me"})
    client.delete_stream(stream, current_version=count - 1)


def test_appending_with_no_stream_undeletes_and_continues_the_numbering(
    client: EventStoreDBClient, stream: str
) -> None:
    soft_deleted(client, stream, 3)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event(n=7))
    assert [e.stream_position for e in client.get_stream(stream)] == [3]
    metadata, _ = client.get_stream_metadata(stream)
    assert metadata == {"$tb": 3}


def test_appending_to_a_soft_deleted_stream_with_its_last_revision_or_any_undeletes(
    client: EventStoreDBClient, stream: str
) -> None:
    soft_deleted(client, stream, 2)
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=0, events=event())
    client.append_to_stream(stream, current_version=1, events=[event()])
    client.append_to_stream(stream, current_version=StreamState.ANY, events=event())
    assert [e.stream_position for e in client.get_stream(stream)] == [2, 3]


def test_exists_on_a_soft_deleted_stream_says_deleted(
    client: EventStoreDBClient, stream: str
) -> None:
    soft_deleted(client, stream, 1)
    with pytest.raises(StreamIsDeleted):
        client.append_to_stream(stream, current_version=StreamState.EXISTS, events=[event()])
    # The single-event Append path has no typed error in esdbclient: the server's
    # FAILED_PRECONDITION "is deleted" surfaces as FailedPrecondition.
    with pytest.raises(FailedPrecondition, match="is deleted"):
        client.append_to_stream(stream, current_version=StreamState.EXISTS, events=event())


def test_re_appending_with_exists_is_idempotent_by_event_id(
    client: EventStoreDBClient, stream: str
) -> None:
    e1, e2 = events(2)
    position = client.append_to_stream(stream, current_version=StreamState.ANY, events=[e1, e2])
    again = client.append_to_stream(stream, current_version=StreamState.EXISTS, events=[e1, e2])
    assert again == position
    assert client.get_current_version(stream) == 1


def test_a_wrong_expected_version_on_a_soft_deleted_stream_reports_the_raw_revision(
    client: EventStoreDBClient, stream: str
) -> None:
    soft_deleted(client, stream, 2)
    with pytest.raises(WrongCurrentVersion, match="is 1 not"):
        client.append_to_stream(stream, current_version=5, events=[event()])


def test_an_append_of_exactly_one_mebibyte_is_accepted(
    client: EventStoreDBClient, stream: str
) -> None:
    data = b"x" * (1024 * 1024 - 10)
    new = NewEvent(type="Big", data=data, metadata=b"0123456789", content_type="application/x")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[new])
    (recorded,) = client.get_stream(stream)
    assert recorded.data == data

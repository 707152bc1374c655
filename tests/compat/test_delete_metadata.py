"""Soft delete, tombstone and stream metadata, and how reads and appends behave afterwards."""

from __future__ import annotations

import pytest
from esdbclient import EventStoreDBClient, StreamState
from esdbclient.exceptions import NotFound, StreamIsDeleted, WrongCurrentVersion

from tests.fixtures.esdb_events import event, events


def test_soft_delete_hides_the_stream_until_the_next_append(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(2))
    with pytest.raises(WrongCurrentVersion):
        client.delete_stream(stream, current_version=0)
    client.delete_stream(stream, current_version=1)
    with pytest.raises(NotFound):
        client.get_stream(stream)
    client.delete_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=0, events=event())
    client.append_to_stream(stream, current_version=1, events=event())
    assert [e.stream_position for e in client.get_stream(stream)] == [2]


def test_deleting_a_stream_that_never_existed_raises_not_found(
    client: EventStoreDBClient, stream: str
) -> None:
    with pytest.raises(NotFound):
        client.delete_stream(stream, current_version=StreamState.ANY)


def test_a_tombstoned_stream_can_never_be_read_or_written_again(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())
    client.tombstone_stream(stream, current_version=0)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream)
    with pytest.raises(StreamIsDeleted):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=[event()])
    with pytest.raises(StreamIsDeleted):
        client.delete_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.tombstone_stream(stream, current_version=StreamState.ANY)
    tombstone = [
        e for e in client.read_all(filter_exclude=[], limit=100_000) if e.stream_name == stream
    ]
    assert [e.type for e in tombstone] == ["Tested", "$streamDeleted"]


def test_tombstoning_a_missing_stream_with_any_succeeds(
    client: EventStoreDBClient, stream: str
) -> None:
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream)


def test_metadata_round_trips_with_its_version_and_max_count_truncates_reads(
    client: EventStoreDBClient, stream: str
) -> None:
    assert client.get_stream_metadata(stream) == ({}, StreamState.NO_STREAM)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(5))
    client.set_stream_metadata(stream, metadata={"$maxCount": 2, "owner": "me"})
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"$maxCount": 2, "owner": "me"}
    assert version == 0
    with pytest.raises(WrongCurrentVersion):
        client.set_stream_metadata(stream, metadata={}, current_version=5)
    assert [e.stream_position for e in client.get_stream(stream)] == [3, 4]

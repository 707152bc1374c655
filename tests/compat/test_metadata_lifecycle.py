"""Stream metadata across soft delete and tombstone, subscriptions from the end and to a
tombstoned stream, and invalid stream names (protocol notes §5 and §10.1)."""

from __future__ import annotations

import pytest
from esdbclient import EventStoreDBClient, StreamState
from esdbclient.exceptions import (
    EventStoreDBClientException,
    NotFound,
    StreamIsDeleted,
    WrongCurrentVersion,
)

from tests.fixtures.esdb_events import event, events

SOFT_DELETED = 9223372036854775807


def test_soft_delete_writes_tb_metadata_that_can_be_replaced_at_its_version(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3))
    client.set_stream_metadata(stream, metadata={"owner": "me"})
    client.delete_stream(stream, current_version=2)
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"$tb": SOFT_DELETED}
    assert version == 1
    with pytest.raises(WrongCurrentVersion):
        client.set_stream_metadata(stream, metadata={"foo": "bar"}, current_version=0)
    client.set_stream_metadata(stream, metadata={"foo": "bar"}, current_version=version)
    assert client.get_stream_metadata(stream) == ({"foo": "bar"}, 2)
    # Metadata without $tb makes the old events visible again, as on the real server.
    assert [e.stream_position for e in client.get_stream(stream)] == [0, 1, 2]


def test_metadata_keeps_unknown_keys_and_acl_verbatim_and_checks_its_own_version(
    client: EventStoreDBClient, stream: str
) -> None:
    assert client.get_stream_metadata(stream) == ({}, StreamState.NO_STREAM)
    client.set_stream_metadata(
        stream, metadata={"foo": "bar"}, current_version=StreamState.NO_STREAM
    )
    acl = {"$acl": {"$r": "$all", "$w": ["admin"]}, "foo": {"nested": [1, 2]}}
    client.set_stream_metadata(stream, metadata=acl, current_version=0)
    assert client.get_stream_metadata(stream) == (acl, 1)
    with pytest.raises(WrongCurrentVersion):
        client.set_stream_metadata(stream, metadata={}, current_version=10)
    with pytest.raises(WrongCurrentVersion):
        client.set_stream_metadata(stream, metadata={}, current_version=StreamState.NO_STREAM)


def test_after_a_tombstone_metadata_writes_succeed_but_reads_say_deleted(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())
    client.set_stream_metadata(stream, metadata={"a": 1})
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream_metadata(stream)
    client.set_stream_metadata(stream, metadata={"b": 2}, current_version=0)
    client.set_stream_metadata(stream, metadata={"c": 3}, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream_metadata(stream)
    with pytest.raises(StreamIsDeleted):
        client.get_current_version(stream)


def test_deleting_with_exists_after_a_soft_delete_says_deleted_and_no_stream_succeeds(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(2))
    client.delete_stream(stream, current_version=StreamState.EXISTS)
    assert client.get_current_version(stream) is StreamState.NO_STREAM
    with pytest.raises(StreamIsDeleted):
        client.delete_stream(stream, current_version=StreamState.EXISTS)
    client.delete_stream(stream, current_version=StreamState.NO_STREAM)
    client.delete_stream(stream, current_version=1)


def test_tombstoning_a_missing_stream_with_exists_raises_not_found(
    client: EventStoreDBClient, stream: str
) -> None:
    with pytest.raises(NotFound):
        client.tombstone_stream(stream, current_version=StreamState.EXISTS)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())


def test_a_subscription_from_the_end_sees_only_later_events(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3))
    with client.subscribe_to_all(
        from_end=True, filter_include=[stream], filter_by_stream_name=True, timeout=10
    ) as subscription:
        client.append_to_stream(stream, current_version=2, events=event(n=99))
        received = next(e for e in subscription if e.stream_name == stream)
    assert received.stream_position == 3


def test_a_stream_subscription_ends_with_the_tombstone_then_raises_deleted(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(2))
    client.tombstone_stream(stream, current_version=1)
    seen: list[str] = []
    with (
        pytest.raises(StreamIsDeleted),
        client.subscribe_to_stream(stream, timeout=10) as subscription,
    ):
        seen.extend(e.type for e in subscription)
    assert seen == ["Tested", "Tested", "$streamDeleted"]


def test_an_empty_stream_name_is_refused_and_the_server_keeps_serving(
    client: EventStoreDBClient, stream: str
) -> None:
    with pytest.raises(EventStoreDBClientException):
        client.append_to_stream("", current_version=StreamState.ANY, events=event())
    with pytest.raises(EventStoreDBClientException):
        client.append_to_stream("", current_version=StreamState.ANY, events=events(2))
    with pytest.raises(EventStoreDBClientException):
        client.get_stream("")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())
    assert [e.stream_position for e in client.get_stream(stream)] == [0]

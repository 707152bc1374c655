"""Scavenging through clients: Operations.StartScavenge and StopScavenge over raw gRPC (esdbclient
has no call for them), reads through esdbclient before and after.

The first tests hold for every backend: a real server may remove less (it leaves its active
chunk alone) but never shows anything else. The `emulator` tests check what the emulator
removes, on an emulator of their own.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import NotFound, StreamIsDeleted

from esdb_emulator import EmbeddedServer
from tests.fixtures.esdb_events import event, events
from tests.fixtures.rpc_calls import stop_scavenge
from tests.fixtures.scavenges import scavenge


def shown(client: EventStoreDBClient, stream: str) -> Any:
    """What reads of `stream` show: its events forwards and backwards, or the refusal."""
    try:
        forwards = client.get_stream(stream)
        backwards = client.get_stream(stream, backwards=True)
    except (NotFound, StreamIsDeleted) as exc:
        return type(exc).__name__
    return [(e.stream_position, e.commit_position, e.id) for e in forwards], [
        (e.stream_position, e.commit_position, e.id) for e in backwards
    ]


def write_history(client: EventStoreDBClient, stream: str) -> list[str]:
    """Streams under each rule a scavenge applies; returns their names."""
    truncated, counted, soft, hard, plain = (
        f"{stream}-{name}" for name in ("truncated", "counted", "soft", "hard", "plain")
    )
    for name in (truncated, counted, soft, hard, plain):
        client.append_to_stream(name, current_version=StreamState.NO_STREAM, events=events(3))
    client.set_stream_metadata(truncated, metadata={"$tb": 2}, current_version=StreamState.ANY)
    client.set_stream_metadata(counted, metadata={"$maxCount": 1}, current_version=StreamState.ANY)
    client.delete_stream(soft, current_version=2)
    client.tombstone_stream(hard, current_version=2)
    return [truncated, counted, soft, hard, plain]


def in_all(client: EventStoreDBClient, prefix: str) -> list[tuple[str, int, int, uuid.UUID]]:
    return [
        (e.stream_name, e.stream_position, e.commit_position or 0, e.id)
        for e in client.read_all(filter_include=[f"{prefix}.*"], filter_by_stream_name=True)
    ]


def test_a_scavenge_started_by_a_client_is_logged_as_completed(
    esdb_url: str, client: EventStoreDBClient
) -> None:
    completed = scavenge(esdb_url, client)
    assert completed["result"] == "Success"


def test_stopping_a_scavenge_that_is_not_running_is_not_found(esdb_url: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stop_scavenge(esdb_url, str(uuid.uuid4()))
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Scavenge id was invalid.",
    )


def test_reads_of_streams_show_the_same_after_a_scavenge(
    esdb_url: str, client: EventStoreDBClient, stream: str
) -> None:
    names = write_history(client, stream)
    before = {name: shown(client, name) for name in names}
    scavenge(esdb_url, client)
    assert {name: shown(client, name) for name in names} == before


def test_all_after_a_scavenge_shows_part_of_what_it_showed_at_the_same_positions(
    esdb_url: str, client: EventStoreDBClient, stream: str
) -> None:
    write_history(client, stream)
    before = in_all(client, stream)
    scavenge(esdb_url, client)
    after = in_all(client, stream)
    assert [e for e in before if e in after] == after


@pytest.mark.emulator
def test_after_a_scavenge_all_no_longer_holds_removed_events(
    own_emulator: EmbeddedServer, stream: str
) -> None:
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        write_history(client, stream)
        before = in_all(client, stream)
        scavenge(own_emulator.connection_string, client)
        after = in_all(client, stream)
    finally:
        client.close()
    assert [(name.rsplit("-", 1)[1], revision) for name, revision, _, _ in after] == [
        ("truncated", 2),
        ("counted", 2),
        ("soft", 2),
        ("plain", 0),
        ("plain", 1),
        ("plain", 2),
        ("hard", 2**63 - 1),  # the tombstone, written after the others
    ]
    assert [e for e in before if e in after] == after


@pytest.mark.emulator
def test_appends_after_a_scavenge_continue_the_streams(
    own_emulator: EmbeddedServer, stream: str
) -> None:
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3))
        client.set_stream_metadata(stream, metadata={"$tb": 2}, current_version=StreamState.ANY)
        head = client.get_commit_position()
        scavenge(own_emulator.connection_string, client)
        position = client.append_to_stream(stream, current_version=2, events=event())
        revisions = [e.stream_position for e in client.get_stream(stream)]
    finally:
        client.close()
    assert (revisions, position > head) == ([2, 3], True)


@pytest.mark.emulator
def test_a_catch_up_subscription_runs_on_across_a_scavenge_without_gap_or_repeat(
    own_emulator: EmbeddedServer, stream: str
) -> None:
    """Many events, most truncated, so the server still has some to send when the scavenge
    removes them; the subscription goes on with what is left, then the live event."""
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3000))
        client.set_stream_metadata(stream, metadata={"$tb": 2500}, current_version=StreamState.ANY)
        subscription = client.subscribe_to_all(
            filter_include=[stream], filter_by_stream_name=True, timeout=60
        )
        received = [next(subscription).stream_position for _ in range(10)]
        scavenge(own_emulator.connection_string, client)
        client.append_to_stream(stream, current_version=2999, events=[NewEvent("Live", b"{}")])
        for recorded in subscription:
            received.append(recorded.stream_position)
            if recorded.type == "Live":
                break
        subscription.stop()
    finally:
        client.close()
    assert received == sorted(set(received))  # in order, none twice
    assert received[:10] == list(range(10))
    assert set(range(2500, 3001)) <= set(received)

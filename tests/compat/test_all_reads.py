"""`$all` reads from a position both ways with limits, regex filters on stream names and event
types (include and exclude), and the asyncio client's error paths."""

from __future__ import annotations

import asyncio

import pytest
from esdbclient import AsyncEventStoreDBClient, EventStoreDBClient, StreamState
from esdbclient.exceptions import NotFound, StreamIsDeleted, WrongCurrentVersion

from tests.fixtures.esdb_events import event, events


def names_and_revisions(recorded: object) -> list[tuple[str, int]]:
    return [(e.stream_name, e.stream_position) for e in recorded]  # type: ignore[attr-defined]


def test_read_all_from_a_position_both_ways_with_a_limit(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(6))
    positions = [e.commit_position for e in client.get_stream(stream)]
    only = {"filter_include": [stream], "filter_by_stream_name": True}
    forwards = client.read_all(commit_position=positions[2], limit=2, **only)  # type: ignore[arg-type]
    assert [e.stream_position for e in forwards] == [2, 3]
    backwards = client.read_all(
        commit_position=positions[4],
        backwards=True,
        limit=3,
        **only,  # type: ignore[arg-type]
    )
    # Backwards from a position starts before it, as the real server does.
    assert [e.stream_position for e in backwards] == [3, 2, 1]
    newest_first = client.read_all(backwards=True, limit=2, **only)  # type: ignore[arg-type]
    assert [e.stream_position for e in newest_first] == [5, 4]


def test_regex_filters_on_stream_names_include_and_exclude(
    client: EventStoreDBClient, unique: str
) -> None:
    streams = [f"order-{unique}-1", f"order-{unique}-2", f"invoice-{unique}-1"]
    for name in streams:
        client.append_to_stream(name, current_version=StreamState.NO_STREAM, events=event())
    orders = client.read_all(filter_include=[f"order-{unique}-.*"], filter_by_stream_name=True)
    assert [e.stream_name for e in orders] == streams[:2]
    either = client.read_all(
        filter_include=[f"order-{unique}-2", f"invoice-{unique}-\\d"], filter_by_stream_name=True
    )
    assert [e.stream_name for e in either] == streams[1:]
    rest = client.read_all(
        filter_exclude=[f"order-{unique}-.*", r"\$.*"], filter_by_stream_name=True, limit=100_000
    )
    names = {e.stream_name for e in rest}
    assert streams[2] in names
    assert not names & set(streams[:2])


def test_regex_filters_on_event_types_include_and_exclude(
    client: EventStoreDBClient, unique: str
) -> None:
    stream = f"typed-{unique}"
    kinds = [f"Created{unique}", f"Renamed{unique}", f"Closed{unique}"]
    client.append_to_stream(
        stream,
        current_version=StreamState.NO_STREAM,
        events=[event(kind) for kind in kinds],
    )
    started = client.read_all(filter_include=[f"(Created|Renamed){unique}"])
    assert [e.type for e in started] == kinds[:2]
    mine = client.read_all(filter_exclude=[f"Closed{unique}", r"\$.*"], limit=100_000)
    assert [e.type for e in mine if e.stream_name == stream] == kinds[:2]


def test_asyncio_client_error_paths(esdb_url: str, stream: str) -> None:
    async def scenario() -> None:
        client = AsyncEventStoreDBClient(esdb_url)
        await client.connect()
        try:
            with pytest.raises(NotFound):
                await client.get_stream(stream)
            await client.append_to_stream(
                stream, current_version=StreamState.NO_STREAM, events=events(2)
            )
            with pytest.raises(WrongCurrentVersion):
                await client.append_to_stream(stream, current_version=0, events=[event()])
            assert await client.get_current_version(stream) == 1
            await client.tombstone_stream(stream, current_version=1)
            with pytest.raises(StreamIsDeleted):
                await client.append_to_stream(
                    stream, current_version=StreamState.ANY, events=[event()]
                )
        finally:
            await client.close()

    asyncio.run(scenario())

"""Differential: the same operations through esdbclient against the emulator and against a real
EventStoreDB give the same results, step by step.

Needs both at once (the real one from TEST_ESDB_URL or Docker); otherwise it skips saying so.
Positions differ between servers, so each is replaced by its rank among the positions the run
saw; stream names by their role. Documented divergences (docs/emulator.md) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.events import CaughtUp
from esdbclient.exceptions import EventStoreDBClientException

from esdb_emulator import EmbeddedServer
from tests.fixtures.esdb_events import event, events

pytestmark = [pytest.mark.emulator, pytest.mark.real]


class At(int):
    """A commit position, compared by rank within one run."""


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or the name of the esdbclient error it raised."""
    try:
        return call()
    except EventStoreDBClientException as exc:
        return type(exc).__name__


def scenario(client: EventStoreDBClient, prefix: str) -> list[tuple[str, Any]]:
    s, t, u = f"{prefix}-s", f"{prefix}-t", f"{prefix}-u"
    e0, e1, e2, e3 = events(4)
    steps: list[tuple[str, Any]] = []

    def step(name: str, call: Callable[[], Any]) -> None:
        steps.append((name, attempt(call)))

    def append(stream: str, version: int | StreamState, payload: Any) -> Callable[[], At]:
        return lambda: At(client.append_to_stream(stream, current_version=version, events=payload))

    def read(stream: str, **options: Any) -> Callable[[], list[tuple[int, str, Any, At]]]:
        return lambda: [
            (e.stream_position, e.type, json.loads(e.data or b"null"), At(e.commit_position))
            for e in client.get_stream(stream, **options)
        ]

    step("read a missing stream", read(s))
    step("version of a missing stream", lambda: str(client.get_current_version(s)))
    step("append with no stream", append(s, StreamState.NO_STREAM, e0))
    step("the same again", append(s, StreamState.NO_STREAM, e0))
    step("append two at 0", append(s, 0, [e1, e2]))
    step("the same two at 0 again", append(s, 0, [e1, e2]))
    step("the same two with any", append(s, StreamState.ANY, [e1, e2]))
    step("append at a revision ahead", append(s, 5, [event()]))
    step("append with no stream to a stream", append(s, StreamState.NO_STREAM, event()))
    step("append with exists", append(s, StreamState.EXISTS, e3))
    step("read forwards", read(s))
    step("read from 1, two", read(s, stream_position=1, limit=2))
    step("read backwards, two", read(s, backwards=True, limit=2))
    step("set max count", lambda: client.set_stream_metadata(s, metadata={"$maxCount": 3}))
    step("read with max count", read(s))
    step("metadata", lambda: client.get_stream_metadata(s))
    step("delete at a stale revision", lambda: client.delete_stream(s, current_version=0))
    step("delete at the current revision", lambda: client.delete_stream(s, current_version=3))
    step("read a deleted stream", read(s))
    step("version of a deleted stream", lambda: str(client.get_current_version(s)))
    step("metadata of a deleted stream", lambda: client.get_stream_metadata(s))
    step("append with no stream undeletes", append(s, StreamState.NO_STREAM, event(n=9)))
    step("read an undeleted stream", read(s))
    step("metadata of an undeleted stream", lambda: client.get_stream_metadata(s))
    step("append to t", append(t, StreamState.NO_STREAM, events(2)))
    step("tombstone at a stale revision", lambda: client.tombstone_stream(t, current_version=0))
    step("tombstone t", lambda: client.tombstone_stream(t, current_version=1))
    step("read a tombstoned stream", read(t))
    step("append to a tombstoned stream", append(t, StreamState.ANY, [event()]))
    step("delete a tombstoned stream", lambda: client.delete_stream(t, current_version=1))
    step("delete a missing stream", lambda: client.delete_stream(u, current_version=0))
    big = NewEvent(type="Big", data=b"x" * (1024 * 1024 + 1), content_type="application/x")
    step("append over one mebibyte", append(u, StreamState.ANY, [big]))
    step("append of exactly one mebibyte", append(u, StreamState.ANY, [_sized(1024 * 1024)]))
    mine = {"filter_include": [f"{prefix}-.*"], "filter_by_stream_name": True}
    step(
        "$all filtered by stream name",
        lambda: [
            (e.stream_name, e.stream_position, e.type, At(e.commit_position))
            for e in client.read_all(**mine)  # type: ignore[arg-type]
        ],
    )
    step(
        "$all backwards, three",
        lambda: [
            (e.stream_name, e.stream_position)
            for e in client.read_all(backwards=True, limit=3, **mine)  # type: ignore[arg-type]
        ],
    )
    step("subscription to $all until caught up", lambda: _caught_up(client, mine))
    return _normalised(steps, prefix)


def _sized(size: int) -> NewEvent:
    return NewEvent(type="Sized", data=b"y" * size, content_type="application/x")


def _caught_up(client: EventStoreDBClient, mine: dict[str, Any]) -> list[tuple[str, int]]:
    seen = []
    with client.subscribe_to_all(include_caught_up=True, timeout=30, **mine) as subscription:
        for item in subscription:
            if isinstance(item, CaughtUp):
                return seen
            seen.append((item.stream_name, item.stream_position))
    return seen


def _normalised(steps: list[tuple[str, Any]], prefix: str) -> list[tuple[str, Any]]:
    positions: set[int] = set()

    def collect(value: Any) -> None:
        if isinstance(value, At):
            positions.add(value)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    collect(steps)
    rank = {position: n for n, position in enumerate(sorted(positions))}

    def convert(value: Any) -> Any:
        if isinstance(value, At):
            return f"position #{rank[value]}"
        if isinstance(value, str):
            return value.replace(prefix, "P")
        if isinstance(value, list | tuple):
            return type(value)(convert(item) for item in value)
        return value

    return [(name, convert(outcome)) for name, outcome in steps]


def test_the_emulator_and_a_real_server_agree_step_by_step(
    shared_emulator: EmbeddedServer, real_esdb_url: str, unique: str
) -> None:
    results = []
    for url in (shared_emulator.connection_string, real_esdb_url):
        client = EventStoreDBClient(url)
        try:
            results.append(scenario(client, f"diff-{unique}"))
        finally:
            client.close()
    emulated, real = results
    assert emulated == real

"""The EventStoreDB side of the worker: what it subscribes to, and the translation of esdbclient's
`RecordedEvent` into the client-independent items the reader hands to the pipeline
(`StoredEvent`, `ServerCheckpoint`, `CaughtUp`).

The subscription filter is applied by the server: only streams named `user-<...>` (esdbclient
anchors the pattern as `^(user-.*)$`), so system streams (`$...`, including `$$user-...` metadata
streams) never reach the worker and long stretches of other events cost it nothing but the
server's checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from esdbclient import EventStoreDBClient, RecordedEvent

from usersvc.events import STREAM_PREFIX
from usersvc.records import StoredEvent
from worker.reader import CaughtUp, Item, Reader, ServerCheckpoint

log = logging.getLogger(__name__)

# Keyword arguments for `EventStoreDBClient.subscribe_to_all` / `read_all`.
FILTER_INCLUDE: tuple[str, ...] = (STREAM_PREFIX + ".*",)
FILTER_BY_STREAM_NAME = True
# The server sends a checkpoint every WINDOW_SIZE * CHECKPOINT_INTERVAL_MULTIPLIER events it scans,
# matching or not; the worker stores it so a restart skips what was already scanned.
WINDOW_SIZE = 500
CHECKPOINT_INTERVAL_MULTIPLIER = 10
# A server checkpoint beyond this cannot be a real position (the real server sends 2**64-1 when it
# has scanned nothing) and would not fit the BIGINT column.
_MAX_POSITION = 2**63 - 1


class SourceError(RuntimeError):
    """A recorded event lacks something every event must have (a commit position)."""


class HistoryLost(RuntimeError):
    """The stored checkpoint is ahead of the head of `$all`: the store lost events the read
    model already holds (or is another store). Projecting on would wait for positions that may
    come back holding other events, so the worker stops."""


def check_history(client: EventStoreDBClient, checkpoint: int | None, timeout: float) -> None:
    """Raise `HistoryLost` when `checkpoint` lies beyond the last event of `$all`.

    The head is read unfiltered, as the last position any checkpoint can have: a server never
    checkpoints past the last event of `$all` (servers before 23.10 did; they are not
    supported), and a scavenge never removes the last event of a stream.
    """
    if checkpoint is None:
        return
    head = client.get_commit_position(filter_exclude=[], timeout=timeout)
    if head < checkpoint:
        raise HistoryLost(
            f"the stored checkpoint, commit position {checkpoint}, is ahead of the head of $all, "
            f"commit position {head}: EventStoreDB has lost events this read model holds, or "
            "is not the store it was built from. Refusing to project; restore EventStoreDB, "
            "or rebuild the read model (docs/operations.md, Recovery)"
        )


def subscription_filter() -> dict[str, Any]:
    """The filter arguments shared by the live subscription and reads of `$all`."""
    return {
        "filter_include": FILTER_INCLUDE,
        "filter_by_stream_name": FILTER_BY_STREAM_NAME,
    }


def to_stored(recorded: RecordedEvent) -> StoredEvent:
    """Translate an `esdbclient.RecordedEvent` read from `$all`.

    A recorded event without a commit position (only possible when reading a stream, not `$all`)
    or without a created timestamp raises `SourceError`.
    """
    position = recorded.commit_position
    if position is None:
        raise SourceError(
            f"event {recorded.id} in stream {recorded.stream_name!r} has no commit position"
        )
    if recorded.recorded_at is None:
        raise SourceError(
            f"event at commit position {position} in stream {recorded.stream_name!r} "
            "has no created timestamp"
        )
    return StoredEvent(
        commit_position=int(position),
        stream=recorded.stream_name,
        revision=int(recorded.stream_position),
        event_id=recorded.id,
        type=recorded.type,
        data=recorded.data,
        metadata=recorded.metadata,
        content_type=recorded.content_type,
        recorded_at=recorded.recorded_at,
    )


def items(recorded_events: Iterable[RecordedEvent]) -> Iterator[Item]:
    """A catch-up subscription's events, checkpoints and caught-up signals as reader items."""
    for recorded in recorded_events:
        if recorded.is_checkpoint:
            position = recorded.commit_position
            if position is None or not 0 < position <= _MAX_POSITION:
                log.debug("ignoring server checkpoint at %s", position)
                continue
            yield ServerCheckpoint(position)
        elif recorded.is_caught_up:
            yield CaughtUp()
        else:
            yield to_stored(recorded)


def subscribe(client: EventStoreDBClient, after: int | None, *, capacity: int) -> Reader:
    """A reader over a filtered catch-up subscription to `$all`, strictly after `after`."""
    subscription = client.subscribe_to_all(
        commit_position=after,
        include_checkpoints=True,
        include_caught_up=True,
        window_size=WINDOW_SIZE,
        checkpoint_interval_multiplier=CHECKPOINT_INTERVAL_MULTIPLIER,
        **subscription_filter(),
    )
    return Reader(
        items(subscription),
        capacity=capacity,
        endless=True,
        cancel=subscription.stop,
        name="worker-subscription",
    )

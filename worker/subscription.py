"""The EventStoreDB side of the worker: what it subscribes to, and the translation of esdbclient's
`RecordedEvent` into the client-independent `StoredEvent` that the projection reads.

The subscription filter is applied by the server: only streams named `user-<...>` (esdbclient
anchors the pattern as `^(user-.*)$`), so system streams (`$...`, including `$$user-...` metadata
streams) never reach the worker and long stretches of other events cost it nothing but the
server's checkpoints.
"""

from __future__ import annotations

from typing import Any

from esdbclient import RecordedEvent

from usersvc.events import STREAM_PREFIX
from usersvc.records import StoredEvent

# Keyword arguments for `EventStoreDBClient.subscribe_to_all` / `read_all`.
FILTER_INCLUDE: tuple[str, ...] = (STREAM_PREFIX + ".*",)
FILTER_BY_STREAM_NAME = True
# The server sends a checkpoint every WINDOW_SIZE * CHECKPOINT_INTERVAL_MULTIPLIER events it scans,
# matching or not; the worker stores it so a restart skips what was already scanned.
WINDOW_SIZE = 500
CHECKPOINT_INTERVAL_MULTIPLIER = 10


class SourceError(RuntimeError):
    """A recorded event lacks something every event must have (a commit position)."""


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

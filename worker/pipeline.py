"""The commit loop shared by the live worker and the offline tools: batch → projection →
checkpoint, in one transaction per batch.

`project` takes batches from a `Reader` and commits each with the checkpoint of its last event
(or the server's checkpoint, when that is further), so the rows and the position become visible
together or not at all. It returns when a finite source is exhausted or `stop` is set (after the
batch in flight is committed), and raises what it cannot go on from.

The halting rule, the same live and in replay: when the projection cannot apply an event of a
batch, the events before it in that batch are committed with their checkpoint, and
`ProjectionError` is raised naming the event's position. Nothing after it is applied; a restart
meets the same event again.

Inside a transaction the caller opened (a replay building its target), each batch becomes a
savepoint of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from worker.projection import Projection, ProjectionError
from worker.reader import Batch, Reader

# How often a waiting pipeline looks at its stop event.
STOP_POLL = 0.1


@dataclass(frozen=True, slots=True)
class Committed:
    """What one batch did: reported to the caller's progress callback after it was handled."""

    events: int  # events received in the batch (applied, skipped, and halted-at included)
    applied: int
    skipped: int
    first_position: int | None  # of the first event committed, if any
    position: int | None  # the checkpoint after the batch
    caught_up: bool  # the source has delivered everything recorded so far


OnCommit = Callable[[Committed], None]


def project(
    conn: psycopg.Connection[Any],
    reader: Reader,
    projection: Projection,
    *,
    batch_size: int,
    batch_wait: float,
    stop: threading.Event | None = None,
    on_commit: OnCommit = lambda committed: None,
) -> int | None:
    """Commit the reader's batches until the source ends or `stop` is set; return the checkpoint.

    `conn` must be in autocommit mode or inside the caller's transaction. Raises
    `ProjectionError` (after committing the good part of its batch) and whatever the reader
    raises (`SourceFailed`) or the database raises.
    """
    position = projection.checkpoint(conn)
    while stop is None or not stop.is_set():
        batch = reader.next_batch(batch_size, batch_wait, timeout=STOP_POLL)
        if batch is None:
            continue
        position = _commit(conn, projection, batch, position, on_commit)
        if batch.last:
            break
    return position


def _commit(
    conn: psycopg.Connection[Any],
    projection: Projection,
    batch: Batch,
    stored: int | None,
    on_commit: OnCommit,
) -> int | None:
    advance = batch.checkpoint
    if advance is not None and stored is not None and advance <= stored:
        advance = None
    events = batch.events
    if stored is not None and events and events[0].commit_position <= stored:
        # Already applied (the checkpoint commits with the rows): a redelivery changes nothing.
        events = [e for e in events if e.commit_position > stored]
    halted: ProjectionError | None = None
    applied = skipped = 0
    position = stored
    if events or advance is not None:
        with conn.transaction():
            try:
                result = projection.apply(conn, events)
            except ProjectionError as exc:
                # apply() refuses a batch before writing anything: apply the part before the event.
                halted = exc
                events = [e for e in events if e.commit_position < exc.commit_position]
                result = projection.apply(conn, events)
            applied, skipped = result.applied, result.skipped
            if result.last_position is not None:
                position = max(result.last_position, stored or 0)
            if halted is None and advance is not None and (position is None or advance > position):
                projection.advance(conn, advance)
                position = advance
    on_commit(
        Committed(
            events=len(batch.events),
            applied=applied,
            skipped=skipped,
            first_position=events[0].commit_position if events else None,
            position=position,
            caught_up=batch.caught_up,
        )
    )
    if halted is not None:
        raise halted
    return position

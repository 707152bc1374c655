"""The commit loop shared by the live worker and the offline tools: batch → projection →
checkpoint, in one transaction per batch.

`project` takes batches from a `Reader` and commits each with the checkpoint of its last event
(or the server's checkpoint, when that is further), so the rows and the position become visible
together or not at all. It returns when a finite source is exhausted or `stop` is set (after the
batch in flight is committed), and raises what it cannot go on from.

The halting rule, the same live and in replay: when the projection cannot apply an event of a
batch, the events before it in that batch are committed with their checkpoint, and
`ProjectionError` is raised naming the event's position. Nothing after it is applied; a restart
meets the same event again. Given a `Parking`, the pipeline parks such an event's stream instead
once its tries are spent (`worker.parking`): the stream's events from that one on are set aside
in the batch's transaction and every other stream goes on.

Inside a transaction the caller opened (a replay building its target), each batch becomes a
savepoint of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from usersvc.records import StoredEvent
from worker.parking import Parking
from worker.projection import BatchResult, Projection, ProjectionError
from worker.reader import Batch, Reader

# How often a waiting pipeline looks at its stop event.
STOP_POLL = 0.1


@dataclass(frozen=True, slots=True)
class Committed:
    """What one batch did: reported to the caller's progress callback after it was handled."""

    events: int  # events received in the batch (applied, skipped, and halted-at included)
    applied: int
    skipped: int
    parked: int  # events set aside behind a parked stream (the refused ones included)
    parked_streams: int | None  # streams parked after the batch (None: parking is off)
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
    parking: Parking | None = None,
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
        position = _commit(conn, projection, batch, position, on_commit, parking=parking)
        if batch.last:
            break
    return position


def _commit(
    conn: psycopg.Connection[Any],
    projection: Projection,
    batch: Batch,
    stored: int | None,
    on_commit: OnCommit,
    *,
    parking: Parking | None,
) -> int | None:
    advance = batch.checkpoint
    if advance is not None and stored is not None and advance <= stored:
        advance = None
    events = batch.events
    if stored is not None and events and events[0].commit_position <= stored:
        # Already applied (the checkpoint commits with the rows): a redelivery changes nothing.
        events = [e for e in events if e.commit_position > stored]
    halted: ProjectionError | None = None
    applied = skipped = parked = 0
    position = stored
    if events or advance is not None:
        with conn.transaction():
            if parking is None:
                result, halted = _apply(conn, projection, events)
            else:
                result, halted, parked = _apply_parking(conn, projection, parking, events)
            applied, skipped = result.applied, result.skipped
            if result.last_position is not None:
                position = max(result.last_position, stored or 0)
            # Past parked events at the batch's end too, and the server's checkpoint if further.
            end = max(events[-1].commit_position if events else 0, advance or 0)
            if halted is None and (position is None or end > position):
                projection.advance(conn, end)
                position = end
    on_commit(
        Committed(
            events=len(batch.events),
            applied=applied,
            skipped=skipped,
            parked=parked,
            parked_streams=None if parking is None else parking.count,
            first_position=events[0].commit_position if events else None,
            position=position,
            caught_up=batch.caught_up,
        )
    )
    if halted is not None:
        raise halted
    return position


def _apply(
    conn: psycopg.Connection[Any], projection: Projection, events: list[StoredEvent]
) -> tuple[BatchResult, ProjectionError | None]:
    """Apply `events`, or the part before the first one the projection refuses."""
    try:
        return projection.apply(conn, events), None
    except ProjectionError as exc:
        # apply() refuses a batch before writing anything: apply the part before the event.
        before = [e for e in events if e.commit_position < exc.commit_position]
        return projection.apply(conn, before), exc


def _apply_parking(
    conn: psycopg.Connection[Any],
    projection: Projection,
    parking: Parking,
    events: list[StoredEvent],
) -> tuple[BatchResult, ProjectionError | None, int]:
    """Apply `events` except those of parked streams, parking the stream of each event the
    projection refuses (while the policy allows; else halt at it as `_apply` does)."""
    streams = parking.streams(conn)
    held: list[StoredEvent] = []
    todo = events
    if streams:
        held, todo = _partition(events, lambda e: e.stream in streams)
    refused: list[ProjectionError] = []
    halted: ProjectionError | None = None
    while True:
        try:
            result = projection.apply(conn, todo)
            break
        except ProjectionError as exc:
            refusal = exc
        if not parking.should_park(refusal, len(streams)):
            result, halted = _apply(conn, projection, todo)
            break
        streams.add(refusal.stream)
        refused.append(refusal)
        behind, todo = _partition(todo, _from_on(refusal))
        held.extend(behind)
    if halted is not None:
        # Nothing at or after the halt is committed: park only what lies before it.
        held = [e for e in held if e.commit_position < halted.commit_position]
        refused = [r for r in refused if r.commit_position < halted.commit_position]
    if held:
        held.sort(key=lambda e: e.commit_position)
        parking.park(conn, refused, held)
    return result, halted, len(held)


def _partition(
    events: list[StoredEvent], chosen: Callable[[StoredEvent], bool]
) -> tuple[list[StoredEvent], list[StoredEvent]]:
    """(the events `chosen` picks, the others), each in the order given."""
    picked: list[StoredEvent] = []
    others: list[StoredEvent] = []
    for event in events:
        (picked if chosen(event) else others).append(event)
    return picked, others


def _from_on(refusal: ProjectionError) -> Callable[[StoredEvent], bool]:
    """Picks the refused event and the later events of its stream."""
    return lambda e: e.stream == refusal.stream and e.commit_position >= refusal.commit_position

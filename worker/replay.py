"""Replay history into a fresh database, up to a chosen moment, with the live worker's projection.

The cutoff rule: a replay is always a PREFIX of `$all` (restricted to the stream prefix), so the
result is a read model that really existed.
- `--until-position P` includes the event at P and everything before it.
- `--until-event-id ID` includes that event and everything before it.
- `--until TIME` includes every event up to, not including, the first event whose recorded
  (server) timestamp is later than TIME. Events stamped exactly TIME are included; an event
  stamped earlier than TIME that comes after that first later one is not (timestamps can go
  backwards across a cluster's leader changes; `$all` order is the truth).
- `--from-position P` (and a snapshot's checkpoint) starts strictly after P.
Everything that can be refused is checked before the target is touched: an unreachable source
or target, a cutoff before the first event or after the last, an unknown event id, a damaged
bundle or snapshot, a target that already holds data (unless `--force`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from queue import Empty, Queue
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg import sql

from usersvc.records import StoredEvent
from worker.migrator import migrate
from worker.progress import Progress
from worker.projection import Projection, ProjectionError
from worker.snapshot import SnapshotError, check_snapshot, restore_rows
from worker.sources import EventSource, SourceUnavailable

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000
PREFETCH_BATCHES = 4


class ReplayError(RuntimeError):
    """A replay that must not start; nothing was written."""


class ReplayHalted(ReplayError):
    """The replay met an event the projection cannot apply and stopped before it, as the live
    worker does; the target holds the read model up to the event before it, and its manifest row
    says where and why."""


@dataclass(frozen=True)
class Cutoff:
    kind: str = "none"  # none | time | position | event_id
    time: datetime | None = None
    position: int | None = None
    event_id: UUID | None = None

    def describe(self) -> str:
        if self.kind == "time":
            return f"until time {self.time.isoformat() if self.time else ''} (inclusive)"
        if self.kind == "position":
            return f"until position {self.position} (inclusive)"
        if self.kind == "event_id":
            return f"until event {self.event_id} (inclusive)"
        return "to the end"


@dataclass(frozen=True)
class ReplayRequest:
    target_url: str
    schema: str
    checkpoint_name: str
    cutoff: Cutoff = Cutoff()
    from_position: int | None = None
    snapshot: Path | None = None
    force: bool = False
    batch_size: int = BATCH_SIZE


@dataclass(frozen=True)
class ReplaySummary:
    source: str
    first_position: int | None
    last_position: int | None
    applied: int
    skipped: int
    seconds: float
    checksum: str
    restored_rows: int

    def lines(self) -> list[str]:
        rate = (self.applied + self.skipped) / self.seconds if self.seconds else 0.0
        return [
            f"source:   {self.source}",
            f"range:    positions {self.first_position} .. {self.last_position}",
            f"events:   {self.applied} applied, {self.skipped} skipped"
            + (
                f" (after {self.restored_rows} rows from the snapshot)"
                if self.restored_rows
                else ""
            ),
            f"duration: {self.seconds:.2f} s ({rate:,.0f} events/s)",
            f"checksum: {self.checksum}",
        ]


def resolve_cutoff(
    source: EventSource, cutoff: Cutoff, after: int | None, *, allow_empty: bool = False
) -> int | None:
    """The inclusive last position to replay, or None for everything; refuses what is wrong.
    `allow_empty` accepts a source with nothing after `after` when there is no cutoff (a
    snapshot that is already up to date)."""
    first = source.first_position(after)
    if first is None and not (allow_empty and cutoff.kind == "none"):
        raise ReplayError(f"{source.label} has no events after position {after or 0}")
    if first is None or cutoff.kind == "none":
        return None
    if cutoff.kind == "position":
        assert cutoff.position is not None
        last = source.last_position()
        if cutoff.position < first:
            raise ReplayError(f"position {cutoff.position} is before the first event ({first})")
        if last is not None and cutoff.position > last:
            raise ReplayError(f"position {cutoff.position} is after the last event ({last})")
        return cutoff.position
    previous: int | None = None
    latest: datetime | None = None  # the latest timestamp seen, for a TIME past every event
    for event in source.events(after):
        if cutoff.kind == "time":
            assert cutoff.time is not None
            latest = event.recorded_at if latest is None else max(latest, event.recorded_at)
            if event.recorded_at > cutoff.time:
                if previous is None:
                    raise ReplayError(
                        f"{cutoff.time.isoformat()} is before the first event "
                        f"(recorded {event.recorded_at.isoformat()})"
                    )
                return previous
        elif event.event_id == cutoff.event_id:
            return event.commit_position
        previous = event.commit_position
    if cutoff.kind == "time":
        if latest is not None and latest == cutoff.time:
            return previous  # TIME is the moment of an event: everything is included
        raise ReplayError(
            f"{cutoff.time.isoformat() if cutoff.time else ''} is after the "
            "last event; replay without --until to take everything"
        )
    raise ReplayError(f"no event with id {cutoff.event_id} in {source.label}")


def replay(source: EventSource, request: ReplayRequest) -> ReplaySummary:
    """Check everything, then migrate the target and replay into it."""
    after = request.from_position
    if request.snapshot is not None:
        if request.from_position is not None:
            raise ReplayError("--from-position and --from-snapshot exclude each other")
        try:
            after = check_snapshot(request.snapshot)["checkpoint"]
        except SnapshotError as exc:
            raise ReplayError(str(exc)) from None
    try:
        until = resolve_cutoff(
            source, request.cutoff, after, allow_empty=request.snapshot is not None
        )
        span = span_of(source, after, until)
    except SourceUnavailable as exc:
        raise ReplayError(str(exc)) from None
    _check_target(request)
    migrate(request.target_url, request.schema)
    projection = Projection(request.schema, request.checkpoint_name)
    applied = skipped = restored = 0
    first: int | None = None
    total = None if until is not None else source.total
    with (
        psycopg.connect(request.target_url) as conn,
        Progress("replay", total, span=span) as bar,
    ):
        if request.force:
            _empty(conn, request.schema)
        if request.snapshot is not None:
            with conn.transaction():
                restored = restore_rows(conn, request.schema, request.snapshot)
                if after is not None:
                    projection.advance(conn, after)
        halted: ProjectionError | None = None
        try:
            for read in _batches(source.events(after), until, request.batch_size):
                batch = read
                try:
                    with conn.transaction():
                        result = projection.apply(conn, batch)
                except ProjectionError as exc:
                    halted = exc
                    batch = [e for e in read if e.commit_position < exc.commit_position]
                    if not batch:
                        break
                    with conn.transaction():
                        result = projection.apply(conn, batch)
                first = first if first is not None else batch[0].commit_position
                applied += result.applied
                skipped += result.skipped
                bar.update(len(batch), batch[-1].commit_position)
                if halted is not None:
                    break
        except SourceUnavailable as exc:
            raise ReplayError(f"{exc}; the target holds a partial replay") from None
        last = projection.checkpoint(conn)
        checksum = table_checksum(conn, request.schema)
        summary = ReplaySummary(
            source.label,
            first,
            last,
            applied,
            skipped,
            bar.elapsed,
            checksum,
            restored,
        )
        _write_manifest(conn, request, summary, halted)
    if halted is not None:
        raise ReplayHalted(
            f"{halted}; the replay stopped before it, as the live worker does: the target holds"
            f" the read model up to position {last} (checksum {checksum})"
        )
    return summary


def span_of(source: EventSource, after: int | None, until: int | None) -> tuple[int, int] | None:
    """The positions the replay covers, for an ETA when the number of events is not known."""
    if until is None and source.total is not None:
        return None
    first = source.first_position(after)
    last = until if until is not None else source.last_position()
    return None if first is None or last is None else (first, last)


def _batches(
    events: Iterator[StoredEvent], until: int | None, size: int
) -> Iterator[list[StoredEvent]]:
    """Batches of the source's events up to `until`, read ahead by a thread so that reading
    (gRPC or decompression) overlaps with PostgreSQL writing the previous batch."""
    queue: Queue[list[StoredEvent] | BaseException | None] = Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()

    def read() -> None:
        batch: list[StoredEvent] = []
        try:
            for event in events:
                if stop.is_set() or (until is not None and event.commit_position > until):
                    break
                batch.append(event)
                if len(batch) >= size:
                    queue.put(batch)
                    batch = []
            if batch:
                queue.put(batch)
            queue.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put(exc)

    reader = threading.Thread(target=read, name="replay-reader", daemon=True)
    reader.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get_nowait()
            reader.join(0.05)


def _check_target(request: ReplayRequest) -> None:
    try:
        with psycopg.connect(request.target_url, connect_timeout=10) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name IN ('user', 'checkpoint', 'replay_manifest')",
                (request.schema,),
            ).fetchall()
            for (table,) in tables:
                row = conn.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
                        sql.Identifier(request.schema, table)
                    )
                ).fetchone()
                if row and row[0] and not request.force:
                    raise ReplayError(
                        f"the target schema {request.schema} already holds data (table {table});"
                        " replay into a fresh database or schema, or pass --force to replace it"
                    )
    except psycopg.OperationalError as exc:
        raise ReplayError(f"cannot connect to the target database: {exc}") from None


def _empty(conn: psycopg.Connection[Any], schema: str) -> None:
    with conn.transaction():
        conn.execute(
            sql.SQL("TRUNCATE {}, {} RESTART IDENTITY").format(
                sql.Identifier(schema, "user"), sql.Identifier(schema, "checkpoint")
            )
        )


def table_checksum(conn: psycopg.Connection[Any], schema: str) -> str:
    """SHA-256 over the user rows, every column but the serial id, computed in PostgreSQL:
    the SHA-256 of each row's JSON array (time in UTC), concatenated in byte order of the
    username (COLLATE "C", so the database's collation does not matter)."""
    query = sql.SQL(
        "SELECT encode(sha256(coalesce(string_agg(sha256(convert_to(json_build_array("
        " username,"
        ' to_char("createdAt" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'),'
        ' "fullName", "eventId", "commitPosition")::text, \'UTF8\')),'
        " ''::bytea ORDER BY username COLLATE \"C\"), ''::bytea)), 'hex') FROM {}"
    ).format(sql.Identifier(schema, "user"))
    row = conn.execute(query).fetchone()
    assert row is not None
    return "sha256:" + str(row[0])


def _write_manifest(
    conn: psycopg.Connection[Any],
    request: ReplayRequest,
    summary: ReplaySummary,
    halted: ProjectionError | None = None,
) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (source, from_position, until_spec, first_position, last_position,"
            " events_applied, events_skipped, code_version, checksum, details)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(request.schema, "replay_manifest")),
        (
            summary.source,
            request.from_position,
            request.cutoff.describe(),
            summary.first_position,
            summary.last_position,
            summary.applied,
            summary.skipped,
            version("usersvc"),
            summary.checksum,
            orjson.dumps(
                {
                    "seconds": round(summary.seconds, 3),
                    "snapshot": request.snapshot.name if request.snapshot else None,
                    "restoredRows": summary.restored_rows,
                    "haltedAt": halted.commit_position if halted else None,
                    "haltReason": halted.reason if halted else None,
                }
            ).decode(),
        ),
    )
    conn.commit()

"""Replay history into a fresh database, up to a chosen moment, with the live worker's projection.

A replay is a prefix of `$all` up to a cutoff (the rule in full: `repro.cutoff`), applied in
batches by the live worker's `Projection`, one transaction per batch with the checkpoint in it.
Everything that can be refused is checked before the target is touched: an unreachable source
or target, a cutoff before the first event or after the last, an unknown event id, a damaged
bundle or snapshot, a target that already holds data (unless `--force`). An event the projection
cannot apply halts the replay just before it (`ReplayHalted`), as it halts the live worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import orjson
import psycopg
from psycopg import sql

from repro.cutoff import Cutoff, ReplayError, resolve_cutoff, span_of
from repro.history import EventSource, SourceUnavailable
from repro.progress import Progress
from repro.snapshot import SnapshotError, check_snapshot, restore_rows
from usersvc.records import StoredEvent
from worker.migrator import migrate
from worker.projection import Projection, ProjectionError

__all__ = [
    "Cutoff",
    "ReplayError",
    "ReplayHalted",
    "ReplayRequest",
    "ReplaySummary",
    "replay",
    "resolve_cutoff",
    "span_of",
    "table_checksum",
]

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000
PREFETCH_BATCHES = 4


class ReplayHalted(ReplayError):
    """The replay met an event the projection cannot apply and stopped before it, as the live
    worker does; the target holds the read model up to the event before it, and its manifest row
    says where and why."""


@dataclass(frozen=True)
class ReplayRequest:
    target_url: str
    schema: str
    checkpoint_name: str
    cutoff: Cutoff = field(default_factory=Cutoff)
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

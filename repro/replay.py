"""Replay history into a fresh database, up to a chosen moment, with the live worker's pipeline.

A replay is a prefix of `$all` up to a cutoff (the rule in full: `repro.cutoff`), read by the
worker's `Reader` and committed batch by batch by the worker's `project` with the same
`Projection`, so it halts where the live worker halts. The whole replay (migrations, snapshot rows,
every batch, the manifest row) is ONE transaction of the target: a refused cutoff, a damaged bundle
(checked while it is applied, no separate pass), a source that fails midway (`ReplayFailed`) or an
interrupt (`Interrupted`: SIGINT, or SIGTERM under `repro.interrupts`) leave nothing behind, not
even the schema, so a target holding a manifest row is always a replay that ended; the commit
itself is not cut in two by a signal (one that arrives during it is acted on after it: the replay
has then finished). An event the projection cannot apply halts the replay just before it
(`ReplayHalted`): what came before it is committed with a manifest row that says where and why
(`details.status` is "halted", "finished" otherwise). A target that holds data is refused unless
forced, saying what it holds: a replay that finished or halted (its manifest row), or rows with no
manifest (a live read model, or one left by an interrupted replay of a version that committed as
it went); `force` empties it, manifest included, in the replay's transaction.
A patched projection (`ReplayRequest.projection`, a subclass of the worker's) replays the same
history through a fix under test; the manifest names the projection that built the target.
Forgetting: the source drops events below their stream's truncation (`repro.forgetting`), and a
stream truncated during the replay, below what was already applied, rolls the replay back.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from repro.cutoff import Cutoff, ReplayError, ToEnd, take
from repro.history import EventSource, SourceLost, SourceUnavailable
from repro.interrupts import Hold, Interrupted, signal_name
from repro.loading import qualified_name
from repro.progress import Progress
from repro.snapshot import SnapshotError, check_snapshot, restore_rows
from usersvc.readmodel import (
    CHECKPOINT_TABLE,
    MANIFEST_TABLE,
    PARKED_EVENT_TABLE,
    PARKED_STREAM_TABLE,
    SKIPPED_EVENT_TABLE,
    USER_TABLE,
    ReadModel,
)
from worker.migrator import apply_migrations, load_migrations
from worker.parking import Parking, ParkingPolicy
from worker.pipeline import Committed, project
from worker.projection import Projection, ProjectionError
from worker.reader import Reader, SourceFailed

log = logging.getLogger(__name__)

# The tables whose rows are a read model's state (the manifest says how a replay built them).
_STATE_TABLES = (
    USER_TABLE,
    CHECKPOINT_TABLE,
    PARKED_STREAM_TABLE,
    PARKED_EVENT_TABLE,
    SKIPPED_EVENT_TABLE,
)

BATCH_SIZE = 10_000
PREFETCH_BATCHES = 4
_NOTHING_WRITTEN = "nothing was written (the replay is one transaction, rolled back)"


class ReplayFailed(RuntimeError):
    """The replay stopped partway because reading its source failed (a server gone); it was
    rolled back: nothing was written, and the same replay may succeed when the source is back."""


class ReplayHalted(ReplayError):
    """The replay met an event the projection cannot apply and stopped before it, as the live
    worker does; the target holds the read model up to the event before it, and its manifest row
    says where and why."""


@dataclass(frozen=True)
class ReplayRequest:
    target_url: str
    schema: str
    checkpoint_name: str
    cutoff: Cutoff = field(default_factory=ToEnd)
    from_position: int | None = None
    snapshot: Path | None = None
    force: bool = False
    batch_size: int = BATCH_SIZE
    # A patched projection (a fix under test): a subclass of the worker's, built the same way.
    projection: type[Projection] = Projection
    # None: halt at the first event the projection refuses (the default). A number: park the
    # stream of each such event instead, as the live worker does (at the first refusal), and
    # halt only beyond this many parked streams (worker.parking).
    park_up_to: int | None = None


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
    parked: int = 0  # events set aside behind parked streams (`replay --park`)

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
        ] + (
            [f"parked:   {self.parked} events behind parked streams (usersvc parked list)"]
            if self.parked
            else []
        )


def replay(source: EventSource, request: ReplayRequest) -> ReplaySummary:
    """Check what can be checked up front, then build the target in one transaction."""
    # From the commit (or rollback) until this returns, a stop request is held (and logged), so
    # that a signal cannot leave it unknown whether the commit happened; before, it rolls back.
    committing = Hold()
    try:
        try:
            summary, halted = _replay(source, request, committing)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            raise Interrupted(
                signum,
                f"interrupted by {signal_name(signum)} before it finished; {_NOTHING_WRITTEN}:"
                " run the same command again",
            ) from None
        if committing.signum is not None:
            log.warning(
                "%s arrived while the replay was committing: the replay had finished, and is kept",
                signal_name(committing.signum),
            )
        if halted is not None:
            raise ReplayHalted(
                f"{halted}; the replay stopped before it, as the live worker does: the target"
                f" holds the read model up to position {summary.last_position}"
                f" (checksum {summary.checksum})"
            )
        return summary
    finally:
        committing.release()


def _replay(
    source: EventSource, request: ReplayRequest, committing: Hold
) -> tuple[ReplaySummary, ProjectionError | None]:
    after = request.from_position
    if request.snapshot is not None:
        if request.from_position is not None:
            raise ReplayError("--from-position and --from-snapshot exclude each other")
        try:
            after = check_snapshot(request.snapshot)["checkpoint"]
        except SnapshotError as exc:
            raise ReplayError(str(exc)) from None
    try:
        span = source.span(after)
    except SourceUnavailable as exc:
        raise ReplayError(str(exc)) from None
    _check_target(request)
    with (
        psycopg.connect(request.target_url, autocommit=True) as conn,
        Progress("replay", span=span) as bar,
    ):
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(conn.transaction())
                stack.callback(committing.hold)  # exited first: before the commit or rollback
                stack.enter_context(fewer_collections())
                return _build(conn, source, request, after, bar)
        except SourceFailed as exc:
            raise _source_failure(exc.__cause__ or exc) from None
        except SnapshotError as exc:
            raise ReplayError(f"{exc}; {_NOTHING_WRITTEN}") from None


def _source_failure(cause: BaseException) -> Exception:
    """What a replay whose source failed while it was read raises (it was rolled back)."""
    if isinstance(cause, ReplayError):  # a cutoff outside the history, found while reading
        return cause
    if isinstance(cause, SourceUnavailable) and not isinstance(cause, SourceLost):
        return ReplayError(f"{cause}; {_NOTHING_WRITTEN}")  # a damaged bundle: input to refuse
    # A lost server says what happened; anything else (a bug, memory) is named by its type too.
    what = str(cause) if isinstance(cause, SourceLost) else f"{type(cause).__name__}: {cause}"
    return ReplayFailed(
        f"the source failed while it was read: {what.rstrip(': ')}; {_NOTHING_WRITTEN}:"
        " run the same command again when the source is back"
    )


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """A replay makes millions of short-lived objects and keeps none: the cyclic garbage
    collector, at its default thresholds, spent about a quarter of a bundle replay's CPU walking
    them. Collect rarely while it runs (and never in what existed before), then restore."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _build(
    conn: psycopg.Connection[Any],
    source: EventSource,
    request: ReplayRequest,
    after: int | None,
    bar: Progress,
) -> tuple[ReplaySummary, ProjectionError | None]:
    apply_migrations(conn, request.schema, load_migrations())
    if request.force:
        _empty(conn, request.schema)
    projection = request.projection(request.schema, request.checkpoint_name)
    restored = 0
    if request.snapshot is not None:
        restored = restore_rows(conn, request.schema, request.snapshot)
        if after is not None:
            projection.advance(conn, after)
    tally = _Tally(bar)
    events = take(
        source.events(after), request.cutoff, after=after, allow_empty=request.snapshot is not None
    )
    reader = Reader(
        events,
        capacity=request.batch_size * PREFETCH_BATCHES,
        endless=False,
        name="replay-reader",
    )
    halted: ProjectionError | None = None
    try:
        project(
            conn,
            reader,
            projection,
            batch_size=request.batch_size,
            batch_wait=math.inf,
            on_commit=tally.add,
            parking=_parking(request),
        )
    except ProjectionError as exc:
        halted = exc
    finally:
        reader.close()
    try:
        if halted is not None or not isinstance(request.cutoff, ToEnd):
            # The rest was not read (a halt or a cutoff stopped early), so a damaged bundle would
            # go unnoticed: check it first.
            source.check_integrity()
        # A deletion during the replay must not leave the user in the target.
        source.check_forgotten()
    except SourceUnavailable as exc:
        raise _source_failure(exc) from None
    last = projection.checkpoint(conn)
    checksum = table_checksum(conn, request.schema)
    summary = ReplaySummary(
        source.label,
        tally.first,
        last,
        tally.applied,
        tally.skipped,
        bar.elapsed,
        checksum,
        restored,
        tally.parked,
    )
    _write_manifest(conn, request, summary, halted)
    return summary, halted


class _Tally:
    """Counts what the pipeline committed and moves the progress bar."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.first: int | None = None
        self.applied = 0
        self.skipped = 0
        self.parked = 0

    def add(self, committed: Committed) -> None:
        if self.first is None:
            self.first = committed.first_position
        self.applied += committed.applied
        self.skipped += committed.skipped
        self.parked += committed.parked
        self.bar.update(committed.applied + committed.skipped, committed.position)


def _parking(request: ReplayRequest) -> Parking | None:
    if request.park_up_to is None:
        return None
    # Replay cannot retry later: the same code refuses the same event again, so park at once.
    policy = ParkingPolicy(attempts=1, max_streams=request.park_up_to)
    return Parking(request.schema, request.checkpoint_name, policy)


def _check_target(request: ReplayRequest) -> None:
    """Refuse a target schema that holds data, unless forced, saying what it holds."""
    try:
        with psycopg.connect(request.target_url, connect_timeout=10) as conn:
            held = _held_data(conn, request.schema)
    except psycopg.OperationalError as exc:
        raise ReplayError(f"cannot connect to the target database: {exc}") from None
    if held is not None and not request.force:
        raise ReplayError(
            f"the target schema {request.schema} already holds data ({held}); replay into a"
            " fresh database or schema, or pass --force to empty it and replay again"
        )


def _held_data(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """What the read-model tables of `schema` hold, in words; None when they are empty."""
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name = ANY(%s)",
            (schema, [*_STATE_TABLES, MANIFEST_TABLE]),
        )
    }
    model = ReadModel(schema)
    if MANIFEST_TABLE in tables:
        latest = conn.execute(
            sql.SQL(
                "SELECT source, until_spec, last_position, details->'haltedAt' FROM {}"
                " ORDER BY id DESC LIMIT 1"
            ).format(model.manifest)
        ).fetchone()
        if latest is not None:
            source, until, last, halted_at = latest
            if halted_at is not None:
                return f"a replay of {source} that halted before position {halted_at}"
            return f"a finished replay of {source}, {until}, up to position {last}"
    for table in (name for name in _STATE_TABLES if name in tables):
        row = conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, table))
        ).fetchone()
        if row and row[0]:
            return (
                f"table {table} has rows but there is no replay manifest: a live read model, or"
                " what an interrupted replay of an earlier version left (those committed as they"
                " went), not a finished replay"
            )
    return None


def _empty(conn: psycopg.Connection[Any], schema: str) -> None:
    """Empty the read model (parked and skipped events too) and its replay manifest (`--force`),
    in the replay's transaction (the migrations, applied just before, made every table)."""
    tables = [sql.Identifier(schema, name) for name in (*_STATE_TABLES, MANIFEST_TABLE)]
    conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.SQL(", ").join(tables)))


def table_checksum(conn: psycopg.Connection[Any], schema: str) -> str:
    """SHA-256 over the user rows, every column but the serial id, computed in PostgreSQL:
    the SHA-256 of each row's JSON array (time in UTC), concatenated in byte order of the
    username (COLLATE "C", so the database's collation does not matter)."""
    query = sql.SQL(
        "SELECT encode(sha256(coalesce(string_agg(sha256(convert_to(json_build_array("
        " username,"
        ' to_char("createdAt" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'),'
        ' "fullName", "eventId", "commitPosition", revision)::text, \'UTF8\')),'
        " ''::bytea ORDER BY username COLLATE \"C\"), ''::bytea)), 'hex') FROM {}"
    ).format(ReadModel(schema).users)
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
        ).format(ReadModel(request.schema).manifest),
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
                    "parked": summary.parked,
                    "status": "halted" if halted else "finished",
                    "haltedAt": halted.commit_position if halted else None,
                    "haltReason": halted.reason if halted else None,
                    "projection": qualified_name(request.projection),
                }
            ).decode(),
        ),
    )

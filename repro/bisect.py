"""Find the first event after which a check of the read model fails: `usersvc bisect`.

The read model is built as a replay builds it, with the worker's `Reader`, the pipeline's
`project()` and the same `Projection` (or a patched subclass), into a throwaway schema that exists
only inside one transaction of the database given, always rolled back: nothing is left behind,
whether the bisect ends, fails or is interrupted (a killed process's connection is rolled back by
PostgreSQL).

How, in about one replay of the range:
1. The state before the range (the empty read model, or the history up to `--from-position`,
   applied unchecked) is checked: a check that already fails there blames no event.
2. Forward pass: the events are committed batch by batch (a savepoint each, as a replay does), and
   the check runs after each batch. A savepoint is kept at the last batch boundary where it held.
3. Narrow pass, in the first batch after which it fails: back to that savepoint, then a binary
   search inside the batch, each probe applying the next part of the batch through the same
   pipeline on top of the last state found right (about log2(batch size) probes, re-applying at
   most the batch twice). Then the whole batch is applied again, as the forward pass did.
4. Unless asked to stop there, the forward pass goes on to the end of the range, checking after
   every batch, to test the rule below; the final state is the last one checked.

The rule it assumes: once the check fails, it keeps failing (the check is monotone along the
history). The search finds an event after which the check fails and before which it held; when
the rule holds that is the first such event. The rest of the range is checked to see whether it
holds: the first batch boundary where the check passes again is reported (`RuleBroken`). A check
that fails and passes again within one batch before the culprit is not seen.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from repro.checks import Check, Verdict, verdict
from repro.cutoff import Cutoff, ReplayError, ToEnd, UntilPosition, take
from repro.history import EventSource, SourceUnavailable
from repro.progress import Progress
from repro.replay import fewer_collections
from usersvc.events import username_from_stream
from usersvc.readmodel import ReadModel
from usersvc.records import StoredEvent
from worker.migrator import apply_migrations, load_migrations
from worker.pipeline import Committed, project
from worker.projection import Projection, ProjectionError
from worker.reader import Reader, SourceFailed

BATCH_SIZE = 10_000
PREFETCH_BATCHES = 4
CHECKPOINT_NAME = "usersvc-bisect"
SCHEMA_PREFIX = "usersvc_bisect_"
_BATCH = sql.Identifier("usersvc_bisect_batch")  # the last batch boundary where the check held
_PROBE = sql.Identifier("usersvc_bisect_probe")  # the last state in the batch found right
# The read-model row of the culprit's user, before and after it.
_ROW_COLUMNS = ("username", "createdAt", "fullName", "revision", "eventId", "commitPosition")


class BisectError(RuntimeError):
    """The bisect could not go on (see the message); nothing was left behind."""


@dataclass(frozen=True)
class BisectRequest:
    database_url: str  # where the throwaway schema lives while the bisect runs
    check: Check
    projection: type[Projection] = Projection
    cutoff: Cutoff = field(default_factory=ToEnd)
    from_position: int | None = None  # search after P; the history up to P is applied unchecked
    batch_size: int = BATCH_SIZE
    check_rest: bool = True  # go on to the end of the range, checking the rule


@dataclass
class Cost:
    events: int = 0  # events of the range committed by the forward pass
    prefix_events: int = 0  # events up to --from-position, applied unchecked
    batches: int = 0
    checks: int = 0
    probes: int = 0  # steps of the narrow pass
    reapplied: int = 0  # events applied again by the narrow pass
    seconds: float = 0.0
    first_position: int | None = None
    last_position: int | None = None  # the last position committed by the forward pass


@dataclass(frozen=True)
class Culprit:
    event: StoredEvent
    number: int  # 1 for the first event of the range
    previous_position: int | None  # the position of the state before it (None: empty)
    before: Verdict
    after: Verdict
    row_before: dict[str, Any] | None  # the user's read-model row
    row_after: dict[str, Any] | None


@dataclass(frozen=True)
class RuleHeld:
    """The check failed at every batch boundary after the culprit, the end of the range
    included (the last position checked)."""

    checked: int
    until: int | None


@dataclass(frozen=True)
class RuleBroken:
    """The check passed again after the culprit: at the batch boundary at `position`."""

    position: int
    verdict: Verdict


@dataclass(frozen=True)
class RuleUnchecked:
    """The rest of the range was not read (asked to stop at the culprit)."""


Rule = RuleHeld | RuleBroken | RuleUnchecked


@dataclass(frozen=True)
class Found:
    culprit: Culprit
    rule: Rule
    # The same prefix gave different answers when applied in other batches (see the report).
    unstable: bool
    halted: ProjectionError | None  # the projection stopped later in the range
    cost: Cost


@dataclass(frozen=True)
class NeverFails:
    """The check held after every batch of the range, to its end or to the event the
    projection cannot apply (`halted`)."""

    last: Verdict
    halted: ProjectionError | None
    cost: Cost


@dataclass(frozen=True)
class FailsAtStart:
    """The check already fails before the first event of the range: no event is to blame."""

    verdict: Verdict
    position: int | None  # --from-position, or None for the empty read model
    cost: Cost


Outcome = Found | NeverFails | FailsAtStart


def bisect(source: EventSource, request: BisectRequest) -> Outcome:
    """Run the bisect (see the module). Raises `ReplayError` for a range or source that cannot
    be read (as replay does), `BisectError` when the history cannot be built, and
    `repro.checks.CheckError` when the check cannot run."""
    try:
        span = source.span(request.from_position)
    except SourceUnavailable as exc:
        raise ReplayError(str(exc)) from None
    schema = SCHEMA_PREFIX + uuid.uuid4().hex[:12]
    try:
        conn = psycopg.connect(
            request.database_url, autocommit=True, application_name=f"usersvc bisect {schema}"
        )
    except psycopg.Error as exc:
        raise ReplayError(f"cannot connect to the database: {exc}") from None
    with conn, Progress("bisect", span=span) as bar:
        started = time.monotonic()
        try:
            with conn.transaction(force_rollback=True), fewer_collections():
                search = _Search(conn, request, schema, bar)
                outcome = search.run(source)
        except SourceFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ReplayError):
                raise cause from None
            raise ReplayError(str(cause or exc)) from None
        except SourceUnavailable as exc:
            raise ReplayError(str(exc)) from None
        outcome.cost.seconds = time.monotonic() - started
        return outcome


class _Tap:
    """The events handed to the reader, kept until the pipeline has committed them: the events
    of a batch, for the narrow pass. The reader's thread appends, the pipeline's pops."""

    def __init__(self, events: Iterable[StoredEvent]) -> None:
        self._events = events
        self._kept: deque[StoredEvent] = deque()

    def __iter__(self) -> Iterator[StoredEvent]:
        kept = self._kept
        for event in self._events:
            kept.append(event)
            yield event

    def until(self, position: int | None) -> list[StoredEvent]:
        """Take the events kept up to `position` (those of the batch committed last)."""
        taken: list[StoredEvent] = []
        kept = self._kept
        if position is None:
            return taken
        while kept and kept[0].commit_position <= position:
            taken.append(kept.popleft())
        return taken


class _Search:
    def __init__(
        self, conn: psycopg.Connection[Any], request: BisectRequest, schema: str, bar: Progress
    ) -> None:
        self.conn = conn
        self.request = request
        self.schema = schema
        self.bar = bar
        self.cost = Cost()
        self.stop = threading.Event()
        self.projection: Projection | None = None
        self.tap: _Tap | None = None
        self.good_position: int | None = None  # the last batch boundary where the check held
        self.good: Verdict | None = None
        self.seen = 0  # events of the range before the current batch
        self.culprit: Culprit | None = None
        self.unstable = False
        self.rest_checked = 0
        self.rule: Rule | None = None

    # -- the steps -------------------------------------------------------------------------

    def run(self, source: EventSource) -> Outcome:
        conn, request = self.conn, self.request
        apply_migrations(conn, self.schema, load_migrations())
        conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(self.schema))
        )
        self.projection = request.projection(self.schema, CHECKPOINT_NAME)
        after = request.from_position
        if after is not None:
            self._prefix(take(source.events(None), UntilPosition(after)))
            self.good_position = self.projection.checkpoint(conn)
        where = "before the first event" if after is None else f"at position {after}"
        start = self._check(where)
        if start.wrong:
            return FailsAtStart(start, after, self.cost)
        self.good = start
        halted = self._forward(take(source.events(after), request.cutoff, after=after))
        if self.stop.is_set() or halted is not None or not isinstance(request.cutoff, ToEnd):
            source.check_integrity()  # what was not read is checked all the same
        source.check_forgotten()
        if self.culprit is None:
            assert self.good is not None
            return NeverFails(self.good, halted, self.cost)
        rule = self.rule
        if rule is None:
            rule = RuleHeld(self.rest_checked, self.cost.last_position)
            if not request.check_rest:
                rule = RuleUnchecked()
        return Found(self.culprit, rule, self.unstable, halted, self.cost)

    def _prefix(self, events: Iterable[StoredEvent]) -> None:
        """Apply the history up to --from-position, unchecked."""

        def committed(batch: Committed) -> None:
            self.cost.prefix_events += batch.applied + batch.skipped
            self.bar.update(batch.applied + batch.skipped, batch.position)

        try:
            self._project(events, self.request.batch_size, committed, "bisect-prefix")
        except ProjectionError as exc:
            raise BisectError(
                f"{exc}; it comes before --from-position {self.request.from_position}, so the"
                " state there cannot be built"
            ) from None

    def _forward(self, events: Iterable[StoredEvent]) -> ProjectionError | None:
        self.tap = _Tap(events)
        self._savepoint(_BATCH)
        try:
            self._project(self.tap, self.request.batch_size, self._committed, "bisect-reader")
        except ProjectionError as exc:
            return exc
        return None

    def _committed(self, committed: Committed) -> None:
        """After each batch of the forward pass (the pipeline's progress callback)."""
        assert self.tap is not None
        cost = self.cost
        count = committed.applied + committed.skipped
        self.bar.update(count, committed.position)
        batch = self.tap.until(committed.position)
        if not batch:
            return
        cost.events += len(batch)
        cost.batches += 1
        if cost.first_position is None:
            cost.first_position = batch[0].commit_position
        cost.last_position = batch[-1].commit_position
        where = f"after position {committed.position}"
        if self.culprit is None:
            found = self._check(where)
            if not found.wrong:
                self.good, self.good_position = found, committed.position
                self.seen += len(batch)
                self._release(_BATCH)
                self._savepoint(_BATCH)
                return
            self._narrow(batch)
            if not self.request.check_rest:
                self.stop.set()
            return
        again = self._check(where)
        if again.wrong:
            self.rest_checked += 1
            return
        assert committed.position is not None
        self.rule = RuleBroken(committed.position, again)
        self.stop.set()

    def _narrow(self, batch: list[StoredEvent]) -> None:
        """Find the event of `batch` after which the check fails; leave the state after the
        whole batch, as the forward pass made it."""
        self._rollback(_BATCH)
        self._savepoint(_PROBE)
        lo, hi = 0, len(batch)  # right after batch[:lo], wrong after batch[:hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            self.cost.probes += 1
            self._apply(batch[lo:mid])
            if self._check(f"after position {batch[mid - 1].commit_position}").wrong:
                hi = mid
                self._rollback(_PROBE)
            else:
                lo = mid
                self._release(_PROBE)
                self._savepoint(_PROBE)
        event = batch[lo]
        previous = batch[lo - 1].commit_position if lo else self.good_position
        username = username_from_stream(event.stream)
        before = self._check(f"before position {event.commit_position}")
        row_before = self._row(username)
        self._apply([event])
        after = self._check(f"after position {event.commit_position}")
        row_after = self._row(username)
        self.unstable = before.wrong or not after.wrong
        self.culprit = Culprit(
            event, self.seen + lo + 1, previous, before, after, row_before, row_after
        )
        # Back to the state the forward pass left, the batch applied as it applied it.
        self._rollback(_BATCH)
        self._apply(batch)

    # -- helpers ---------------------------------------------------------------------------

    def _project(
        self,
        events: Iterable[StoredEvent],
        batch_size: int,
        on_commit: Any,
        name: str,
    ) -> None:
        assert self.projection is not None
        reader = Reader(events, capacity=batch_size * PREFETCH_BATCHES, endless=False, name=name)
        try:
            project(
                self.conn,
                reader,
                self.projection,
                batch_size=batch_size,
                batch_wait=math.inf,
                stop=self.stop,
                on_commit=on_commit,
            )
        finally:
            reader.close()

    def _apply(self, events: list[StoredEvent]) -> None:
        """Apply `events` as one batch through the pipeline (the narrow pass)."""
        if not events:
            return
        self.cost.reapplied += len(events)
        assert self.projection is not None
        reader = Reader(iter(events), capacity=len(events) + 1, endless=False, name="bisect-probe")
        try:
            project(self.conn, reader, self.projection, batch_size=len(events), batch_wait=math.inf)
        finally:
            reader.close()

    def _check(self, where: str) -> Verdict:
        self.cost.checks += 1
        return verdict(self.conn, self.request.check, where)

    def _row(self, username: str | None) -> dict[str, Any] | None:
        if username is None:
            return None
        query = sql.SQL("SELECT {} FROM {} WHERE username = %s").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in _ROW_COLUMNS),
            ReadModel(self.schema).users,
        )
        row = self.conn.execute(query, (username,)).fetchone()
        return None if row is None else dict(zip(_ROW_COLUMNS, row, strict=True))

    def _savepoint(self, name: sql.Identifier) -> None:
        self.conn.execute(sql.SQL("SAVEPOINT {}").format(name))

    def _release(self, name: sql.Identifier) -> None:
        self.conn.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))

    def _rollback(self, name: sql.Identifier) -> None:
        self.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))

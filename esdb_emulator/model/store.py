"""The emulator's store: streams and `$all`, written with the real server's rules, durable in a
write-ahead log when it has a directory.

No gRPC here. One lock serializes writes: positions are assigned and records are written and
published under it, and they become visible to readers only once durable (`_sync`, a group
commit), so readers and subscriptions see a gap-free, ordered `$all`. Readers copy slices under
the lock and do their work outside it, and walk `$all` by position (a cursor that a scavenge,
which removes records, does not move).

Opening a data directory replays its log (`wal.py`): a log damaged before its tail is refused
(`LogDamaged`), and after a torn tail was cut new positions start above the log's reserved
position, marked by an epoch record, so that no position is ever given to two events.

`scavenge` removes what the rules of `scavenge.py` discard, from memory and from the log: it
writes the new log beside the old one while appends go on, then, under the lock, adds what was
appended meanwhile and puts the new log in place (see `wal.py` for why a crash leaves either).
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from esdb_emulator.model import metadata as meta
from esdb_emulator.model.decisions import AlreadyWritten, decide
from esdb_emulator.model.errors import (
    BadRequest,
    MaximumAppendSizeExceeded,
    ScavengeStopped,
    StreamNotFound,
    WrongExpectedVersion,
)
from esdb_emulator.model.ledger import Ledger
from esdb_emulator.model.records import (
    EPOCH_STREAM,
    MAX_REVISION,
    AppendResult,
    ImportedEvent,
    Proposed,
    Record,
    epoch_event,
    new_records,
    ticks_now,
)
from esdb_emulator.model.scavenge import ScavengeReport, survivors
from esdb_emulator.model.wal import LogRewrite, WriteAheadLog

MAX_APPEND_SIZE = 1024 * 1024  # the real server's default MaxAppendSize
IMPORT_FRAME = 10_000  # records per write-ahead log frame when importing
REWRITE_FRAME = 10_000  # records per frame of the log a scavenge writes
HIDDEN_FROM_ALL = EPOCH_STREAM
TOMBSTONE_TYPE = "$streamDeleted"


class Store:
    def __init__(self, data_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sync_lock = threading.Lock()
        self._scavenge_lock = threading.Lock()  # one scavenge at a time
        self._closing = threading.Event()
        self._ledger = Ledger()
        # Records of `$all` below this index are durable; only they are visible to readers.
        self._durable = 0
        self._durable_position = 0
        self._wal = WriteAheadLog(data_dir) if data_dir is not None else None
        try:
            with self._lock:
                if self._wal is not None:
                    for transaction in self._wal.replay():
                        self._ledger.publish(transaction)
                    self._mark_durable(len(self._ledger))
                fresh = not self._ledger.all
                if self._wal is not None:
                    self._resume_above_a_torn_tail()
                if fresh:
                    self._seed()
            self._sync()
        except BaseException:
            if self._wal is not None:
                self._wal.close()  # lets go of the directory; a log not replayed is untouched
            raise

    def close(self) -> None:
        """Close the log (a running scavenge stops first, changing nothing)."""
        self._closing.set()
        with self._scavenge_lock, self._lock:
            if self._wal is not None:
                self._wal.close()
                self._wal = None

    # -- reads ----------------------------------------------------------------------------------

    @property
    def head(self) -> int:
        """How many records of `$all` readers see."""
        with self._lock:
            return self._durable

    def last_position(self) -> int:
        with self._lock:
            return self._durable_position

    def read_stream(
        self, stream: str, revision: int | None, backwards: bool, count: int
    ) -> list[Record]:
        """Raise `StreamNotFound` or `StreamDeleted`; `revision` None means start (or end)."""
        with self._lock:
            self._ledger.check_readable(stream)
            state = self._ledger.stream(stream)
            metadata = self._ledger.metadata(stream)
            if state is None or meta.is_soft_deleted(metadata):
                raise StreamNotFound(stream)
            durable = len(self._durable_part(state.records))
            if not durable:
                raise StreamNotFound(stream)
            last = state.first + durable - 1
            low = max(meta.first_visible(stream, metadata, last + 1), state.first)
            if backwards:
                top = last if revision is None else min(revision, last)
                selected = state.between(max(low, top - count + 1), top)[::-1]
            else:
                start = max(low, revision or 0)
                selected = state.between(start, min(start + count - 1, last))
        max_age = meta.max_age_seconds(metadata)
        if max_age is not None:
            oldest = ticks_now() - max_age * 10_000_000
            selected = [r for r in selected if r.created >= oldest]
        return selected

    def stream_records(self, stream: str, start_revision: int, limit: int) -> list[Record]:
        """For stream subscriptions: records from `start_revision`, tombstone last if reached."""
        with self._lock:
            state = self._ledger.stream(stream)
            if state is None:
                return []
            start = max(start_revision - state.first, 0)
            chunk = self._durable_part(state.records[start : start + limit])
            tombstone = state.tombstone
            if (
                len(chunk) < limit
                and tombstone is not None
                and tombstone.position <= self._durable_position
            ):
                chunk.append(tombstone)
            return chunk

    def stream_end(self, stream: str) -> int:
        """The next revision of `stream`."""
        with self._lock:
            state = self._ledger.stream(stream)
            return state.first + len(self._durable_part(state.records)) if state else 0

    def all_from(self, position: int, limit: int) -> list[Record]:
        """Up to `limit` records of `$all` at or after `position`, in order."""
        with self._lock:
            start = bisect.bisect_left(self._ledger.positions, position)
            return self._ledger.all[start : min(start + limit, self._durable)]

    def all_before(self, position: int | None, limit: int) -> list[Record]:
        """Up to `limit` records of `$all` before `position` (None: the end), in order."""
        with self._lock:
            end = self._durable
            if position is not None:
                end = min(end, bisect.bisect_left(self._ledger.positions, position))
            return self._ledger.all[max(0, end - limit) : end]

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until `$all` shows a record at or after `position`, or `timeout` passes."""
        with self._changed:
            if self._durable_position >= position:
                return True
            self._changed.wait(timeout)
            return self._durable_position >= position

    @staticmethod
    def visible_in_all(record: Record) -> bool:
        return record.stream != HIDDEN_FROM_ALL

    # -- writes (each returns once what it wrote is durable) -----------------------------------

    def append(self, stream: str, expected: int, events: Sequence[Proposed]) -> AppendResult:
        if not stream:
            raise BadRequest("Stream name is empty")
        size = sum(len(e.data) + len(e.metadata) for e in events)
        if size > MAX_APPEND_SIZE:
            raise MaximumAppendSizeExceeded(MAX_APPEND_SIZE)
        with self._lock:
            result = self._append(stream, expected, events)
        self._sync()
        return result

    def delete(self, stream: str, expected: int) -> int:
        """Soft delete: reads say not found, `$all` keeps the events, a later append undeletes."""
        with self._lock:
            view = self._ledger.view(stream)
            decide(view, expected, [uuid.uuid4()])
            if view.current == -1 and not view.metadata_exists:
                raise WrongExpectedVersion(stream, expected, -1)
            deleted = meta.metadata_event({"$tb": MAX_REVISION})
            records = self._new_records(meta.metastream(stream), None, [deleted])
            self._commit(records)
        self._sync()
        return records[-1].position

    def tombstone(self, stream: str, expected: int) -> int:
        """Hard delete: the stream can never be read or written again."""
        with self._lock:
            decide(self._ledger.view(stream), expected, [uuid.uuid4()])
            marker = Proposed(uuid.uuid4(), TOMBSTONE_TYPE, False, b"", b"")
            records = self._new_records(stream, MAX_REVISION, [marker])
            self._commit(records)
        self._sync()
        return records[-1].position

    def import_events(self, events: Iterable[ImportedEvent]) -> int:
        """Load events recorded elsewhere keeping their streams, revisions, ids, times and
        positions; return how many.

        Positions must increase strictly and start above the current head of `$all`, and each
        event must continue its stream's revisions; otherwise `BadRequest` says why. All or
        nothing: after a refusal or an I/O error nothing of the import remains.
        """
        records = [event.record() for event in events]
        with self._lock:
            self._ledger.check_import(records)
            mark, wal_mark = len(self._ledger), self._wal.size if self._wal else 0
            try:
                for start in range(0, len(records), IMPORT_FRAME):
                    self._commit(records[start : start + IMPORT_FRAME])
                if self._wal is not None:
                    self._wal.sync()
            except OSError:
                if self._wal is not None:
                    self._wal.truncate(wal_mark)
                self._ledger.truncate(mark)
                raise
            self._mark_durable(len(self._ledger))
        return len(records)

    def scavenge(self, stop: threading.Event | None = None) -> ScavengeReport:
        """Remove from memory and from disk every record written so far that the scavenge rules
        discard; appends may go on meanwhile. Raise `ScavengeStopped` when `stop` is set (or the
        store closes) before the new log is in place, and OSError when it cannot be written:
        then nothing has changed."""
        with self._scavenge_lock:
            with self._lock:
                self._check_stop(stop)
                point = len(self._ledger)
                scanned = self._ledger.all[:point]
                kept = survivors(self._ledger, scanned, ticks_now())
            # What is kept never changes: index it and write it out without the lock.
            ledger = Ledger()
            ledger.publish(kept)
            rewrite = LogRewrite(self._wal.directory) if self._wal is not None else None
            try:
                sizes = self._swap(ledger, kept, point, rewrite, stop)
            except BaseException:
                if rewrite is not None:
                    rewrite.abort()
                raise
        return ScavengeReport(len(scanned), len(scanned) - len(kept), *sizes)

    def _swap(
        self,
        ledger: Ledger,
        kept: list[Record],
        point: int,
        rewrite: LogRewrite | None,
        stop: threading.Event | None,
    ) -> tuple[int, int]:
        """Write `kept`, then what was appended after `point`, into `rewrite` and put both the
        new log and `ledger` in place; return the log's sizes before and after."""
        for start in range(0, len(kept), REWRITE_FRAME):
            self._check_stop(stop)
            if rewrite is not None:
                rewrite.write(kept[start : start + REWRITE_FRAME])
        with self._sync_lock, self._lock:
            self._check_stop(stop)
            tail = self._ledger.all[point:]
            ledger.publish(tail)
            sizes = (0, 0)
            if rewrite is not None and self._wal is not None:
                for start in range(0, len(tail), REWRITE_FRAME):
                    rewrite.write(tail[start : start + REWRITE_FRAME])
                sizes = (self._wal.size, rewrite.size)
                self._wal.replace(rewrite)
            self._ledger = ledger
            # All of the new log is durable: `replace` synced it.
            self._durable = len(ledger)
            self._durable_position = ledger.last_position
            self._changed.notify_all()
        return sizes

    def _check_stop(self, stop: threading.Event | None) -> None:
        if self._closing.is_set():
            raise ScavengeStopped("the store is closing")
        if stop is not None and stop.is_set():
            raise ScavengeStopped("stopped on request")

    # -- internals (the caller holds the lock, except for `_sync`) ------------------------------

    def _append(self, stream: str, expected: int, events: Sequence[Proposed]) -> AppendResult:
        state = self._ledger.stream(stream)
        outcome = decide(self._ledger.view(stream), expected, [e.event_id for e in events])
        if isinstance(outcome, AlreadyWritten):
            assert state is not None
            record = state.at(outcome.last_revision)
            return AppendResult(outcome.last_revision, record.position)
        current = state.next_revision - 1 if state else -1
        if not events:
            return AppendResult(current if current >= 0 else None, None)
        records = self._new_records(stream, current + 1, events)
        metadata = self._ledger.metadata(stream)
        if meta.is_soft_deleted(metadata):
            # The first append after a soft delete undeletes: `$tb` moves to its first revision.
            undelete = meta.metadata_event({**metadata, "$tb": current + 1})
            records += self._new_records(
                meta.metastream(stream), None, [undelete], after=records[-1].position
            )
        self._commit(records)
        last = records[len(events) - 1]
        return AppendResult(last.revision, last.position)

    def _resume_above_a_torn_tail(self) -> None:
        """After a torn tail was cut, go on above every position the log may have handed out
        (its reservation): the cut bytes may have held a frame once acknowledged and damaged
        since, whose positions a reader may hold. An epoch record there keeps the mark."""
        assert self._wal is not None
        torn, reserved = self._wal.torn, self._wal.reserved
        if torn is None or reserved is None or reserved <= self._ledger.last_position:
            return
        reason = f"a torn tail was cut at byte offset {torn.offset}"
        self._commit(self._new_records(EPOCH_STREAM, None, [epoch_event(reason)], after=reserved))

    def _seed(self) -> None:
        """A fresh real node starts with system events; clients' tests rely on one being first."""
        scavenges = {"$maxAge": 2592000, "$acl": {"$r": "$ops", "$w": "$ops"}}
        event = meta.metadata_event(scavenges)
        self._commit(self._new_records(meta.metastream("$scavenges"), 0, [event]))

    def _commit(self, records: list[Record]) -> None:
        """Write and publish to writers (not yet to readers: see `_sync`)."""
        if self._wal is not None:
            self._wal.write(records)
        self._ledger.publish(records)
        if self._wal is None:
            self._mark_durable(len(self._ledger))

    def _sync(self) -> None:
        """Make every record committed so far durable, then visible to readers (group commit:
        whoever syncs covers every frame written before it; the others find their work done).
        The caller does not hold the lock."""
        with self._lock:
            target = len(self._ledger)
            if self._durable >= target:
                return
        with self._sync_lock:
            with self._lock:
                if self._durable >= target:
                    return
                upto, wal = len(self._ledger), self._wal
            if wal is None:
                raise OSError("the store is closed")
            wal.sync()
            with self._lock:
                self._mark_durable(upto)

    def _mark_durable(self, upto: int) -> None:
        if upto > self._durable:
            self._durable = upto
            self._durable_position = self._ledger.positions[upto - 1]
        self._changed.notify_all()

    def _new_records(
        self,
        stream: str,
        first_revision: int | None,
        events: Sequence[Proposed],
        after: int | None = None,
    ) -> list[Record]:
        """`first_revision` None continues `stream`; `after` None follows the last record."""
        revision = self._ledger.next_revision(stream) if first_revision is None else first_revision
        position = self._ledger.last_position if after is None else after
        return new_records(stream, revision, events, position, ticks_now())

    def _durable_part(self, records: list[Record]) -> list[Record]:
        """The prefix of a stream's records that is durable."""
        end = len(records)
        while end and records[end - 1].position > self._durable_position:
            end -= 1
        return records if end == len(records) else records[:end]

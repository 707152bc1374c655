"""The emulator's data model: streams, `$all`, appends with the real server's rules.

No gRPC here. One lock serializes writes; positions are assigned, the transaction is made
durable and then published under it, so readers and subscriptions see a gap-free, ordered `$all`.
Readers copy slices under the lock and do their work outside it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from esdb_emulator.decisions import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AlreadyWritten,
    StreamView,
    decide,
)
from esdb_emulator.errors import BadRequest, MaximumAppendSizeExceeded, WrongExpectedVersion
from esdb_emulator.log import Log
from esdb_emulator.model import (
    FIRST_POSITION,
    IMPORT_FRAME,
    MAX_APPEND_SIZE,
    METADATA_TYPE,
    RECORD_OVERHEAD,
    TOMBSTONE_TYPE,
    AppendResult,
    Proposed,
    StreamState,
    metastream,
    ticks_now,
)
from esdb_emulator.records import MAX_REVISION, Record, from_stored
from esdb_emulator.state import StoreState
from usersvc.records import StoredEvent

log = logging.getLogger(__name__)

__all__ = ["ANY", "NO_STREAM", "STREAM_EXISTS", "AppendResult", "Proposed", "Store"]


class Store(StoreState):
    """The reads of `StoreState` plus appends, deletes and imports, durable in a `Log`."""

    def __init__(self, data_dir: Path | None = None) -> None:
        super().__init__()
        self._sync_lock = threading.Lock()
        self._log = Log(data_dir) if data_dir is not None else None
        if self._log is not None:
            for transaction in self._log.replay():
                self._publish(transaction)
            with self._lock:
                self._mark_durable(len(self._all))
        if not self._all:
            self._seed()
            self._sync()

    def close(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    # -- writes -----------------------------------------------------------------------------

    def append(self, stream: str, expected: int, events: Sequence[Proposed]) -> AppendResult:
        result = self._append(stream, expected, events)
        self._sync()
        return result

    def delete(self, stream: str, expected: int) -> int:
        """Soft delete: reads say not found, `$all` keeps the events, a later append undeletes."""
        position = self._delete(stream, expected)
        self._sync()
        return position

    def tombstone(self, stream: str, expected: int) -> int:
        """Hard delete: the stream can never be read or written again."""
        position = self._tombstone(stream, expected)
        self._sync()
        return position

    def _append(self, stream: str, expected: int, events: Sequence[Proposed]) -> AppendResult:
        if not stream:
            raise BadRequest("Stream name is empty")
        size = sum(len(e.data) + len(e.metadata) for e in events)
        if size > MAX_APPEND_SIZE:
            raise MaximumAppendSizeExceeded(MAX_APPEND_SIZE)
        with self._lock:
            state = self._streams.get(stream)
            outcome = decide(self._view(stream), expected, [e.event_id for e in events])
            if isinstance(outcome, AlreadyWritten):
                assert state is not None
                record = state.records[outcome.last_revision]
                return AppendResult(outcome.last_revision, record.position)
            current = len(state.records) - 1 if state else -1
            if not events:
                return AppendResult(current if current >= 0 else None, None)
            records = self._new_records(stream, current + 1, events)
            if self._soft_deleted(stream):
                records += self._new_records(
                    metastream(stream),
                    self._next_revision(metastream(stream)),
                    [self._metadata_event({**self._metadata(stream), "$tb": current + 1})],
                    after=records[-1].position,
                )
            self._commit(records)
            last = records[len(events) - 1]
            return AppendResult(last.revision, last.position)

    def _delete(self, stream: str, expected: int) -> int:
        with self._lock:
            view = self._view(stream)
            decide(view, expected, [uuid.uuid4()])
            if view.current == -1 and not view.metadata_exists:
                raise WrongExpectedVersion(stream, expected, -1)
            meta = metastream(stream)
            records = self._new_records(
                meta, self._next_revision(meta), [self._metadata_event({"$tb": MAX_REVISION})]
            )
            self._commit(records)
            return records[-1].position

    def _tombstone(self, stream: str, expected: int) -> int:
        with self._lock:
            decide(self._view(stream), expected, [uuid.uuid4()])
            record = self._new_records(
                stream,
                MAX_REVISION,
                [Proposed(uuid.uuid4(), TOMBSTONE_TYPE, False, b"", b"")],
            )
            self._commit(record)
            return record[-1].position

    def import_events(self, events: Iterable[StoredEvent]) -> int:
        """Load recorded events keeping their streams, revisions, ids, times and positions.

        Positions must increase strictly and start above the current head of `$all`, and each
        event must continue its stream's revisions; otherwise `BadRequest` says why and nothing
        is written. Returns the number imported.
        """
        records = [from_stored(event) for event in events]
        with self._lock:
            head = self._positions[-1] if self._positions else 0
            next_revision: dict[str, int] = {}
            for record in records:
                if record.position <= head:
                    raise BadRequest(
                        f"imported event {record.event_id} at position {record.position} "
                        f"is not after position {head}; nothing was imported"
                    )
                state = self._streams.get(record.stream)
                if state is not None and state.tombstone is not None:
                    raise BadRequest(f"stream {record.stream!r} is deleted; nothing was imported")
                expected = next_revision.get(record.stream, self._next_revision(record.stream))
                if record.revision not in (expected, MAX_REVISION):
                    raise BadRequest(
                        f"stream {record.stream!r} continues at revision {expected}, the imported "
                        f"event {record.event_id} has {record.revision}; nothing was imported"
                    )
                next_revision[record.stream] = record.revision + 1
                head = record.position
            for start in range(0, len(records), IMPORT_FRAME):
                self._commit(records[start : start + IMPORT_FRAME])
        self._sync()
        return len(records)

    # -- internals (caller holds the lock) ------------------------------------------------------

    def _seed(self) -> None:
        """A fresh real node starts with system events; clients' tests rely on one being first."""
        meta = {"$maxAge": 2592000, "$acl": {"$r": "$ops", "$w": "$ops"}}
        with self._lock:
            self._commit(self._new_records("$$$scavenges", 0, [self._metadata_event(meta)]))

    def _commit(self, records: list[Record]) -> None:
        """Write and publish to writers (not yet to readers: see `_sync`)."""
        if self._log is not None:
            self._log.write(records)
        self._publish(records)
        if self._log is None:
            self._mark_durable(len(self._all))

    def _sync(self) -> None:
        """Make every record committed so far durable, then visible to readers (group commit:
        whoever syncs covers every frame written before it; the others find their work done)."""
        with self._lock:
            target = len(self._all)
            if self._durable >= target:
                return
        with self._sync_lock:
            with self._lock:
                if self._durable >= target:
                    return
                upto, log_ = len(self._all), self._log
            if log_ is None:
                raise OSError("the store is closed")
            log_.sync()
            with self._lock:
                self._mark_durable(upto)

    def _mark_durable(self, upto: int) -> None:
        """Caller holds the lock."""
        if upto > self._durable:
            self._durable = upto
            self._durable_position = self._positions[upto - 1]
        self.changed.notify_all()

    def _publish(self, records: Iterable[Record]) -> None:
        for record in records:
            self._all.append(record)
            self._positions.append(record.position)
            state = self._streams.setdefault(record.stream, StreamState())
            if record.revision == MAX_REVISION:
                state.tombstone = record
            else:
                state.ids[record.event_id] = record.revision
                state.id_list.append(record.event_id)
                state.records.append(record)

    def _new_records(
        self, stream: str, first_revision: int, events: Sequence[Proposed], after: int | None = None
    ) -> list[Record]:
        position = after if after is not None else (self._positions[-1] if self._positions else 0)
        created = ticks_now()
        records = []
        for offset, event in enumerate(events):
            position = max(
                position + RECORD_OVERHEAD + len(event.data) + len(event.metadata), FIRST_POSITION
            )
            revision = first_revision if first_revision == MAX_REVISION else first_revision + offset
            records.append(
                Record(
                    position,
                    stream,
                    revision,
                    event.event_id,
                    event.type,
                    event.is_json,
                    event.data,
                    event.metadata,
                    created,
                )
            )
        return records

    def _view(self, stream: str) -> StreamView:
        state = self._streams.get(stream) or StreamState()
        meta_state = self._streams.get(metastream(stream))
        return StreamView(
            name=stream,
            current=len(state.records) - 1,
            tombstoned=state.tombstone is not None,
            soft_deleted=self._soft_deleted(stream),
            metadata_exists=bool(meta_state and meta_state.records),
            ids=state.ids,
            revision_ids=state.id_list,
        )

    @staticmethod
    def _metadata_event(meta: dict[str, object]) -> Proposed:
        return Proposed(uuid.uuid4(), METADATA_TYPE, True, orjson.dumps(meta), b"")

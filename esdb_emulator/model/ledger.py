"""Every record in memory, indexed by `$all` order, by position and by stream.

A plain data structure: no locking and no durability (the store does both). It knows what a
stream looks like to the expected-version decision and which imports would continue it.

A stream's records need not start at revision 0: after a scavenge (or an import of a stream
exported after a truncation) its first records are gone, and `StreamState.first` says at which
revision the ones that are left begin. Revisions are never renumbered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from esdb_emulator.model import metadata as meta
from esdb_emulator.model.decisions import StreamView
from esdb_emulator.model.errors import BadRequest, StreamDeleted
from esdb_emulator.model.records import MAX_REVISION, Record


@dataclass(slots=True)
class StreamState:
    records: list[Record] = field(default_factory=list)  # revisions first, first + 1, ...
    ids: dict[UUID, int] = field(default_factory=dict)  # event id -> revision
    id_list: list[UUID] = field(default_factory=list)  # event id of each record of `records`
    tombstone: Record | None = None
    first: int = 0  # the revision of `records[0]`

    @property
    def next_revision(self) -> int:
        return self.first + len(self.records)

    def at(self, revision: int) -> Record:
        """The record at `revision` (which must be one of `records`)."""
        return self.records[revision - self.first]

    def between(self, low: int, high: int) -> list[Record]:
        """The records of revisions `low` to `high` inclusive that exist."""
        start, stop = max(low - self.first, 0), high - self.first + 1
        return self.records[start:stop] if stop > start else []


class Ledger:
    def __init__(self) -> None:
        self.all: list[Record] = []  # `$all` in order
        self.positions: list[int] = []  # the position of each record of `all`
        self._streams: dict[str, StreamState] = {}

    def __len__(self) -> int:
        return len(self.all)

    @property
    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def stream(self, name: str) -> StreamState | None:
        return self._streams.get(name)

    def next_revision(self, stream: str) -> int:
        state = self._streams.get(stream)
        return state.next_revision if state else 0

    def metadata(self, stream: str) -> dict[str, object]:
        state = self._streams.get(meta.metastream(stream))
        return meta.latest(state.records) if state else {}

    def view(self, stream: str) -> StreamView:
        state = self._streams.get(stream) or StreamState()
        meta_state = self._streams.get(meta.metastream(stream))
        return StreamView(
            name=stream,
            current=state.next_revision - 1,
            tombstoned=state.tombstone is not None,
            soft_deleted=meta.is_soft_deleted(self.metadata(stream)),
            metadata_exists=bool(meta_state and meta_state.records),
            ids=state.ids,
            revision_ids=state.id_list,
            first_revision=state.first,
        )

    def check_readable(self, stream: str) -> None:
        """Raise `StreamDeleted` for a tombstoned stream or its metastream."""
        base = stream[2:] if meta.is_metastream(stream) else stream
        state = self._streams.get(base)
        if state is not None and state.tombstone is not None:
            raise StreamDeleted(stream)

    def publish(self, records: Iterable[Record]) -> None:
        for record in records:
            self.all.append(record)
            self.positions.append(record.position)
            state = self._streams.setdefault(record.stream, StreamState())
            if record.revision == MAX_REVISION:
                state.tombstone = record
            else:
                if not state.records:
                    state.first = record.revision
                state.ids[record.event_id] = record.revision
                state.id_list.append(record.event_id)
                state.records.append(record)

    def truncate(self, length: int) -> None:
        """Forget every record after the first `length` of `$all`."""
        for record in reversed(self.all[length:]):
            state = self._streams[record.stream]
            if state.tombstone is record:
                state.tombstone = None
            else:
                state.records.pop()
                state.id_list.pop()
                if state.ids.get(record.event_id) == record.revision:
                    del state.ids[record.event_id]
            if not state.records and state.tombstone is None:
                del self._streams[record.stream]
        del self.all[length:]
        del self.positions[length:]

    def check_import(self, records: Sequence[Record]) -> None:
        """Raise `BadRequest` unless `records` continue `$all` and each of their streams.

        A stream the ledger does not hold yet may begin at any revision (its first revisions
        were truncated and scavenged, or left out of an export); after that, revisions follow
        one another without gaps.
        """
        head = self.last_position
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
            if record.revision < 0:
                raise BadRequest(
                    f"imported event {record.event_id} has revision {record.revision}; "
                    "nothing was imported"
                )
            if state is None and record.stream not in next_revision:
                expected = record.revision
            else:
                expected = next_revision.get(record.stream, self.next_revision(record.stream))
            if record.revision not in (expected, MAX_REVISION):
                raise BadRequest(
                    f"stream {record.stream!r} continues at revision {expected}, the imported "
                    f"event {record.event_id} has {record.revision}; nothing was imported"
                )
            next_revision[record.stream] = record.revision + 1
            head = record.position

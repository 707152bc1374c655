"""The model's value types: a recorded event, a proposed one, an imported one, and what an append
returns; and how new records get their positions and revisions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import orjson

MAX_REVISION = 2**63 - 1  # a tombstone's revision, and `$tb` of a soft-deleted stream
FIRST_POSITION = 1024
# Position gap per record beyond its size, so that positions look like the real log's offsets.
RECORD_OVERHEAD = 64
# Hidden from `$all`; a record here marks where positions jump (after a torn tail or a salvage).
EPOCH_STREAM = "$epoch-information"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


@dataclass(slots=True)
class Record:
    position: int
    stream: str
    revision: int
    event_id: UUID
    type: str
    is_json: bool
    data: bytes
    metadata: bytes
    created: int  # .NET ticks (100 ns) since the Unix epoch
    # A slot the protocol layer may fill with this record's encoded reply, so that the hot read
    # path encodes each record once; the model never reads it.
    wire: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Proposed:
    """An event a client asks to append."""

    event_id: UUID
    type: str
    is_json: bool
    data: bytes
    metadata: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    revision: int | None  # None: the stream still has no events
    position: int | None  # None: nothing was written and nothing matched


@dataclass(frozen=True, slots=True)
class ImportedEvent:
    """An event recorded elsewhere, loaded by `Store.import_events` as it was recorded.

    `position` is its commit (= prepare) position in `$all`; `revision` its revision in its
    stream (`MAX_REVISION` for a tombstone); `recorded_at` a timezone-aware time.
    """

    position: int
    stream: str
    revision: int
    event_id: UUID
    type: str
    data: bytes
    metadata: bytes
    is_json: bool
    recorded_at: datetime

    def record(self) -> Record:
        return Record(
            position=self.position,
            stream=self.stream,
            revision=self.revision,
            event_id=self.event_id,
            type=self.type,
            is_json=self.is_json,
            data=self.data,
            metadata=self.metadata,
            created=ticks(self.recorded_at),
        )


def epoch_event(reason: str) -> Proposed:
    """The event of an epoch record: why positions jump to it."""
    return Proposed(uuid4(), EPOCH_STREAM, True, orjson.dumps({"reason": reason}), b"")


def ticks(moment: datetime) -> int:
    """.NET ticks (100 ns) since the Unix epoch, exactly (to the microsecond)."""
    return (moment - _EPOCH) // _TICK * 10


def ticks_now() -> int:
    return time.time_ns() // 100


def new_records(
    stream: str, first_revision: int, events: Sequence[Proposed], after: int, created: int
) -> list[Record]:
    """Records of `events` placed after position `after`; a tombstone keeps `MAX_REVISION`."""
    position = after
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

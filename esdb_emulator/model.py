"""The store's value types and constants: proposed events, append results, per-stream state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

from esdb_emulator.records import Record

MAX_APPEND_SIZE = 1024 * 1024  # the real server's default MaxAppendSize
FIRST_POSITION = 1024
# Position gap per record beyond its size, so that positions look like the real log's offsets.
RECORD_OVERHEAD = 64
IMPORT_FRAME = 10_000  # records per log frame when importing
HIDDEN_FROM_ALL = "$epoch-information"
METADATA_TYPE = "$metadata"
TOMBSTONE_TYPE = "$streamDeleted"


@dataclass(frozen=True, slots=True)
class Proposed:
    event_id: UUID
    type: str
    is_json: bool
    data: bytes
    metadata: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    revision: int | None  # None: the stream still has no events
    position: int | None  # None: nothing was written and nothing matched


class StreamNotFound(Exception):
    pass


@dataclass(slots=True)
class StreamState:
    records: list[Record] = field(default_factory=list)
    ids: dict[UUID, int] = field(default_factory=dict)
    id_list: list[UUID] = field(default_factory=list)
    tombstone: Record | None = None


def ticks_now() -> int:
    return time.time_ns() // 100


def metastream(stream: str) -> str:
    return "$$" + stream

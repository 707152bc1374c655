"""The emulator's record of one event, and its binary form in the log and on the wire."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from uuid import UUID

from usersvc.records import StoredEvent

MAX_REVISION = 2**63 - 1  # a tombstone's revision, and `$tb` of a soft-deleted stream

# position, revision, created ticks, is_json, len(stream), len(type), len(data), len(metadata), id
_HEADER = struct.Struct("<QQqBHHII16s")


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
    # The serialized ReadResp of this event for clients that ask for string UUIDs (filled lazily
    # by the servicer; the hot read path sends these bytes as they are).
    wire: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def is_system(self) -> bool:
        return self.type.startswith("$")

    def encode(self) -> bytes:
        stream, type_ = self.stream.encode(), self.type.encode()
        return (
            _HEADER.pack(
                self.position,
                self.revision,
                self.created,
                self.is_json,
                len(stream),
                len(type_),
                len(self.data),
                len(self.metadata),
                self.event_id.bytes,
            )
            + stream
            + type_
            + self.data
            + self.metadata
        )


def from_stored(event: StoredEvent) -> Record:
    """The emulator's record of an event recorded elsewhere (an imported bundle)."""
    return Record(
        position=event.commit_position,
        stream=event.stream,
        revision=event.revision,
        event_id=event.event_id,
        type=event.type,
        is_json=event.content_type == "application/json",
        data=event.data,
        metadata=event.metadata,
        created=int(event.recorded_at.timestamp() * 1_000_000) * 10,
    )


def decode_records(payload: bytes) -> list[Record]:
    records = []
    offset = 0
    while offset < len(payload):
        (position, revision, created, is_json, n_stream, n_type, n_data, n_meta, raw_id) = (
            _HEADER.unpack_from(payload, offset)
        )
        offset += _HEADER.size
        stream = payload[offset : offset + n_stream].decode()
        offset += n_stream
        type_ = payload[offset : offset + n_type].decode()
        offset += n_type
        data = payload[offset : offset + n_data]
        offset += n_data
        metadata = payload[offset : offset + n_meta]
        offset += n_meta
        records.append(
            Record(
                position,
                stream,
                revision,
                UUID(bytes=raw_id),
                type_,
                bool(is_json),
                data,
                metadata,
                created,
            )
        )
    return records

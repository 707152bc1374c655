"""The log's format: frames of records, and how a log's bytes are told apart into whole frames,
a torn tail and damage.

A frame is `magic (4 bytes) | payload length (u32) | CRC-32 of the payload (u32) | payload`, and
its payload holds every record of one append. A record is a fixed header (`_HEADER`) followed by
its stream name, type, data and metadata. After the last frame come zeros (space preallocated for
the next frames) or the end of the file.

`scan` reads a log from the start. A frame is whole when its magic, length and checksum are
right, its payload decodes into records, and their positions increase from the frame before.
Where a frame is not whole, the bytes up to the next whole frame are damage; when no whole frame
follows, the rest (up to the zeros) is a torn tail: the last write, cut short by a crash. Writes
go at the end of the log, one at a time, so a crash can cut only the last frame short; a bad
frame with a whole one after it was written whole once and has been damaged since.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from uuid import UUID

from esdb_emulator.model.records import Record

MAGIC = b"ESL1"
_FRAME = struct.Struct("<4sII")
# position, revision, created ticks, is_json, len(stream), len(type), len(data), len(metadata), id
_HEADER = struct.Struct("<QQqBHHII16s")
_ZERO_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """A whole frame at bytes `offset` to `end` of the log."""

    offset: int
    end: int
    records: list[Record]


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes `offset` to `end` of the log that are no whole frame: damage when a whole frame
    follows them (at `end`), a torn tail when none does (`torn`)."""

    offset: int
    end: int
    torn: bool

    @property
    def size(self) -> int:
        return self.end - self.offset


def scan(content: bytes) -> Iterator[Frame | Damage]:
    """The whole frames and the damage of a log's bytes, in order; a torn tail comes last."""
    data_end = _nonzero_end(content)
    offset = after = 0
    while offset < data_end:
        frame = frame_at(content, offset, after)
        if frame is None:
            following = next_frame(content, offset + 1, after)
            if following is None:
                yield Damage(offset, data_end, torn=True)
                return
            yield Damage(offset, following.offset, torn=False)
            frame = following
        yield frame
        offset, after = frame.end, frame.records[-1].position


def frame_at(content: bytes, offset: int, after: int) -> Frame | None:
    """The whole frame at `offset` whose positions all lie above `after`, or None."""
    start = offset + _FRAME.size
    if start > len(content):
        return None
    magic, length, crc = _FRAME.unpack_from(content, offset)
    end = start + length
    if magic != MAGIC or length == 0 or end > len(content):
        return None
    payload = content[start:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        records = decode_records(payload)
    except (struct.error, UnicodeDecodeError, ValueError):
        return None
    for record in records:
        if record.position <= after:
            return None
        after = record.position
    return Frame(offset, end, records)


def next_frame(content: bytes, start: int, after: int) -> Frame | None:
    """The first whole frame at or after byte `start` whose positions lie above `after`."""
    at = content.find(MAGIC, start)
    while at >= 0:
        frame = frame_at(content, at, after)
        if frame is not None:
            return frame
        at = content.find(MAGIC, at + 1)
    return None


def _nonzero_end(content: bytes) -> int:
    """Where the trailing zeros (or the file) begin."""
    end = len(content)
    while end > 0:
        start = max(0, end - _ZERO_CHUNK)
        kept = len(content[start:end].rstrip(b"\0"))
        if kept:
            return start + kept
        end = start
    return 0


def encode_frame(records: Sequence[Record]) -> bytes:
    payload = b"".join(encode_record(record) for record in records)
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def encode_record(record: Record) -> bytes:
    stream, type_ = record.stream.encode(), record.type.encode()
    return b"".join(
        (
            _HEADER.pack(
                record.position,
                record.revision,
                record.created,
                record.is_json,
                len(stream),
                len(type_),
                len(record.data),
                len(record.metadata),
                record.event_id.bytes,
            ),
            stream,
            type_,
            record.data,
            record.metadata,
        )
    )


def decode_records(payload: bytes) -> list[Record]:
    """The records of a frame's payload; ValueError (or struct.error) when it is not one."""
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
    if offset != len(payload):
        raise ValueError("the last record runs past the end of the frame")
    return records

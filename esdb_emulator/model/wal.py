"""The write-ahead log: one file, `events.log`, of framed transactions.

A frame is `magic (4 bytes) | payload length (u32) | CRC-32 of the payload (u32) | payload`, and
its payload holds every record of one append, so an append is on disk whole or not at all. A
record is a fixed header (`_HEADER`) followed by its stream name, type, data and metadata.
Frames are written with one `write`; `sync` (fdatasync) makes every frame written so far durable,
and the store acknowledges an append only after a `sync` that covers it, so concurrent appenders
share one sync (group commit). The file is preallocated in large steps (zeros), which makes each
fdatasync cheaper; a zero header marks the end of the data. On open the file is read from the
start; the first frame that is short or fails its checksum marks a torn tail (a crash mid-write),
which is cut off.

One process at a time holds a data directory: opening the log takes an exclusive lock on
`emulator.lock` beside it (released on close, or by the kernel when the process dies), so a
second emulator, or an offline scavenge, on the same directory is refused.

A scavenge never edits the log in place: it writes the new log beside it (`LogRewrite`, file
`events.log.scavenging`), fsyncs it, renames it over `events.log` and fsyncs the directory
(`WriteAheadLog.replace`). A crash before the rename leaves the old log whole (the unfinished
file is removed at the next open), one after it the new log whole; never a mix.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import UUID

from esdb_emulator.model.records import Record

log = logging.getLogger(__name__)

MAGIC = b"ESL1"
_FRAME = struct.Struct("<4sII")
_END = bytes(_FRAME.size)
# position, revision, created ticks, is_json, len(stream), len(type), len(data), len(metadata), id
_HEADER = struct.Struct("<QQqBHHII16s")
FILE_NAME = "events.log"
REWRITE_NAME = "events.log.scavenging"
LOCK_NAME = "emulator.lock"
PREALLOCATE = 64 * 1024 * 1024


class DataDirectoryInUse(OSError):
    """Another emulator (or scavenge) holds the data directory."""


class WriteAheadLog:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / FILE_NAME
        self._lock_fd = hold(directory)
        try:
            unfinished = directory / REWRITE_NAME
            if unfinished.exists():
                log.warning("removing %s, left by a scavenge that did not finish", unfinished)
                unfinished.unlink()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            os.close(self._lock_fd)
            raise
        self._size = 0
        self._allocated = 0

    @property
    def size(self) -> int:
        """Bytes of whole frames written so far (a mark for `truncate`)."""
        return self._size

    def replay(self) -> Iterator[list[Record]]:
        """Yield each stored transaction in order, cutting off a torn tail."""
        with open(self.path, "rb") as file:
            content = file.read()
        offset = 0
        while offset < len(content):
            frame = content[offset : offset + _FRAME.size]
            if len(frame) < _FRAME.size or frame == _END:
                break
            magic, length, crc = _FRAME.unpack(frame)
            payload = content[offset + _FRAME.size : offset + _FRAME.size + length]
            if magic != MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                break
            yield decode_records(payload)
            offset += _FRAME.size + length
        tail = content[offset:]
        if tail.count(0) != len(tail):
            log.warning("cutting a torn tail of %d bytes off %s", len(tail), self.path)
        if tail:
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._size = self._allocated = offset

    def write(self, records: Sequence[Record]) -> None:
        """Write one frame (not yet durable: see `sync`)."""
        frame = encode_frame(records)
        try:
            self._preallocate(len(frame))
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes")
        except OSError:
            # Leave no partial frame behind: later frames must follow the last whole one.
            self.truncate(self._size)
            raise
        self._size += len(frame)

    def truncate(self, size: int) -> None:
        """Drop every frame written after `size` (a value `size` had)."""
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self._size = self._allocated = size

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def replace(self, rewrite: LogRewrite) -> None:
        """Put the new log `rewrite` in this one's place, durably and atomically, and go on
        writing at its end."""
        os.fsync(rewrite.fd)
        os.replace(rewrite.path, self.path)
        # From here on the new log is the log: write to it whatever happens next.
        os.close(self._fd)
        self._fd, rewrite.fd = rewrite.fd, -1
        self._size = self._allocated = rewrite.size
        try:
            sync_directory(self.directory)
        except OSError as exc:
            # Either log is whole: a crash now may bring back the old one, never a mix.
            log.warning("could not sync %s after replacing its log: %s", self.directory, exc)

    def close(self) -> None:
        """Give back the preallocated space, close and let go of the directory (again:
        nothing)."""
        if self._fd < 0:
            return
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.close(self._lock_fd)

    def _preallocate(self, needed: int) -> None:
        if self._size + needed <= self._allocated:
            return
        step = max(PREALLOCATE, needed)
        try:
            os.posix_fallocate(self._fd, self._size, step)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            return
        self._allocated = self._size + step


class LogRewrite:
    """A new log written beside the current one, for `WriteAheadLog.replace` (or `abort`)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / REWRITE_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.size = 0

    def write(self, records: Sequence[Record]) -> None:
        frame = encode_frame(records)
        written = os.write(self.fd, frame)
        if written != len(frame):
            raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes")
        self.size += len(frame)

    def abort(self) -> None:
        """Close and remove the new log (the current one was never touched)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


def hold(directory: Path) -> int:
    """Lock `directory` for this process (raise `DataDirectoryInUse` if another holds it);
    return the descriptor that holds the lock."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirectoryInUse(
            f"{directory} is in use by another emulator or scavenge (process {holder})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def sync_directory(directory: Path) -> None:
    """Make renames in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

"""The on-disk log: one file, `events.log`, of framed transactions.

A frame is `magic (4 bytes) | payload length (u32) | CRC-32 of the payload (u32) | payload`, and
its payload holds every record of one append (see `records.Record.encode`), so an append is on
disk whole or not at all. Frames are written with one `write`; `sync` (fdatasync) makes every
frame written so far durable, and the store acknowledges an append only after a `sync` that
covers it, so concurrent appenders share one sync (group commit). The file is preallocated in
large steps (zeros), which makes each fdatasync cheaper; a zero header marks the end of the data.
On open the file is read from the start; the first frame that is short or fails its checksum
marks a torn tail (a crash mid-write), which is cut off.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from esdb_emulator.records import Record, decode_records

log = logging.getLogger(__name__)

MAGIC = b"ESL1"
_FRAME = struct.Struct("<4sII")
_END = bytes(_FRAME.size)
FILE_NAME = "events.log"
PREALLOCATE = 64 * 1024 * 1024


class Log:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._size = 0
        self._allocated = 0

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

    def write(self, records: list[Record]) -> None:
        """Write one frame (not yet durable: see `sync`)."""
        payload = b"".join(record.encode() for record in records)
        frame = _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        try:
            self._preallocate(len(frame))
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes")
        except OSError:
            # Leave no partial frame behind: later frames must follow the last whole one.
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
            self._allocated = self._size
            raise
        self._size += len(frame)

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        os.close(self._fd)

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

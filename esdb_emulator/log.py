"""The on-disk log: one file, `events.log`, of framed transactions.

A frame is `magic (4 bytes) | payload length (u32) | CRC-32 of the payload (u32) | payload`, and
its payload holds every record of one append (see `records.Record.encode`), so an append is on
disk whole or not at all. Frames are written with one `write` and made durable with `fdatasync`
before the append is acknowledged. On open the file is read from the start; the first frame that
is short or fails its checksum marks a torn tail (a crash mid-write), which is cut off.
"""

from __future__ import annotations

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
FILE_NAME = "events.log"


class Log:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._size = 0

    def replay(self) -> Iterator[list[Record]]:
        """Yield each stored transaction in order, cutting off a torn tail."""
        with open(self.path, "rb") as file:
            content = file.read()
        offset = 0
        while offset < len(content):
            frame = content[offset : offset + _FRAME.size]
            if len(frame) < _FRAME.size:
                break
            magic, length, crc = _FRAME.unpack(frame)
            payload = content[offset + _FRAME.size : offset + _FRAME.size + length]
            if magic != MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                break
            yield decode_records(payload)
            offset += _FRAME.size + length
        if offset < len(content):
            log.warning("cutting a torn tail of %d bytes off %s", len(content) - offset, self.path)
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._size = offset

    def write(self, records: list[Record]) -> None:
        payload = b"".join(record.encode() for record in records)
        frame = _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes")
            os.fdatasync(self._fd)
        except OSError:
            # Leave no partial frame behind: later frames must follow the last whole one.
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
            raise
        self._size += len(frame)

    def close(self) -> None:
        os.close(self._fd)

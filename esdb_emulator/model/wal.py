"""The write-ahead log: one file, `events.log`, of framed transactions (the format, and how a
log is told apart into whole frames, a torn tail and damage: `frames.py`).

Writing: a frame holds every record of one append, written with one `write`, so an append is
on disk whole or not at all. `sync` (fdatasync) makes every frame written so far durable, and
the store acknowledges an append only after a `sync` that covers it, so concurrent appenders
share one sync (group commit). The file is preallocated in large steps (zeros), which makes each
fdatasync cheaper. A new log file, like every rename in the directory, is made durable by an
fsync of the directory.

Opening: the file is read from the start. A torn tail (the last frame, cut short by a crash
before it was synced, so never acknowledged) is cut off with a warning naming its offset.
Damage anywhere else (a frame that is not whole, with a whole frame after it) raises
`LogDamaged`, naming the file and the offset, and changes nothing: the emulator refuses to start
rather than drop the acknowledged events after it. `salvage.py` copies every whole frame into a
new data directory.

Positions: `events.reserved` holds a position at or above every position ever written to the
log. Before a frame whose positions pass it is written, it is moved `RESERVE_STEP` further and
made durable (a new file, synced, renamed, directory synced), so it costs a sync per
`RESERVE_STEP` of positions. After a cut tail, or a salvage over damage, new positions start
above it (`Store`, `salvage`): whatever the lost bytes held, their positions are never handed to
another event.

One process at a time holds a data directory: opening the log takes an exclusive lock on
`emulator.lock` beside it (released on close, or by the kernel when the process dies), so a
second emulator, or an offline scavenge, on the same directory is refused.

A scavenge never edits the log in place: it writes the new log beside it (`LogRewrite`, file
`events.log.scavenging`), fsyncs it, renames it over `events.log` and fsyncs the directory
(`WriteAheadLog.replace`). A crash before the rename leaves the old log whole (the unfinished
file is removed at the next open), one after it the new log whole; never a mix. Appends after
the rename go to the new log, so if the directory cannot be synced (a crash could then bring
back the old log) the log refuses every later write until the emulator restarts.
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

from esdb_emulator.model.frames import Damage, Frame, encode_frame, scan
from esdb_emulator.model.records import Record

log = logging.getLogger(__name__)

FILE_NAME = "events.log"
REWRITE_NAME = "events.log.scavenging"
LOCK_NAME = "emulator.lock"
RESERVED_NAME = "events.reserved"
PREALLOCATE = 64 * 1024 * 1024
RESERVE_STEP = 1 << 26  # positions reserved at a time
MAX_POSITION = 2**63 - 1  # a commit position is a signed 64-bit number on the real server
_RESERVED_MAGIC = b"ESR1"
_RESERVED = struct.Struct("<4sQI")  # magic, reserved position, CRC-32 of the position's bytes


class DataDirectoryInUse(OSError):
    """Another emulator (or scavenge) holds the data directory."""


class LogDamaged(OSError):
    """The log is damaged before its tail (or its reservation is unreadable); nothing was
    changed. `offset` is the first damaged byte of `path`."""

    def __init__(self, path: Path, offset: int, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class WriteAheadLog:
    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            sync_directory(directory.parent)
        self.directory = directory
        self.path = directory / FILE_NAME
        self._lock_fd = hold(directory)
        self._fd = -1
        try:
            unfinished = directory / REWRITE_NAME
            if unfinished.exists():
                log.warning("removing %s, left by a scavenge that did not finish", unfinished)
                unfinished.unlink()
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if created:
                sync_directory(directory)
            # At or above every position in the log; None for a log older than reservations.
            self.reserved = read_reservation(directory)
        except OSError:
            if self._fd >= 0:
                os.close(self._fd)
            os.close(self._lock_fd)
            raise
        self._size = 0
        self._allocated = 0
        self._replayed = False
        self._failure: str | None = None
        # The torn tail `replay` cut off, if any.
        self.torn: Damage | None = None

    @property
    def size(self) -> int:
        """Bytes of whole frames written so far (a mark for `truncate`)."""
        return self._size

    def replay(self) -> Iterator[list[Record]]:
        """Yield each stored transaction in order and cut off a torn tail; raise `LogDamaged`,
        having changed nothing, at damage before the tail."""
        with open(self.path, "rb") as file:
            content = file.read()
        end = frames = 0
        for item in scan(content):
            if isinstance(item, Frame):
                yield item.records
                end, frames = item.end, frames + 1
            elif not item.torn:
                raise LogDamaged(self.path, item.offset, damage_message(self.path, item, frames))
            else:
                self.torn = item
                log.warning(
                    "cutting a torn tail of %d bytes at byte offset %d off %s (the last write, "
                    "cut short by a crash before it was acknowledged)",
                    item.size,
                    item.offset,
                    self.path,
                )
        if end < len(content):
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        os.lseek(self._fd, end, os.SEEK_SET)
        self._size = self._allocated = end
        self._replayed = True

    def write(self, records: Sequence[Record]) -> None:
        """Write one frame (not yet durable: see `sync`)."""
        self._check()
        last = records[-1].position
        if self.reserved is None or last > self.reserved:
            self.reserved = write_reservation(self.directory, last + RESERVE_STEP)
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
        self._check()
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
            # A crash could still bring back the old log: acknowledging an append written to
            # the new one could lose it. Refuse to write until a restart reopens the log.
            self._failure = (
                f"could not sync {self.directory} after replacing its log ({exc}); "
                "no write is accepted until the emulator restarts"
            )
            raise OSError(self._failure) from exc

    def close(self) -> None:
        """Give back the preallocated space, close and let go of the directory (again:
        nothing). A log never replayed (its opening failed) is left as it is."""
        if self._fd < 0:
            return
        try:
            if self._replayed:
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)

    def _check(self) -> None:
        if self._failure is not None:
            raise OSError(self._failure)

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


def damage_message(path: Path, damage: Damage, frames: int) -> str:
    return (
        f"{path} is damaged at byte offset {damage.offset} (after {frames} whole frames): "
        f"{damage.size} bytes are no whole frame, and a whole frame follows at byte offset "
        f"{damage.end}, so this is not a torn tail; the emulator will not cut the log there "
        "and drop the events after it, and changed nothing. Copy what is whole into a new data "
        f"directory with: python -m esdb_emulator salvage --from {path.parent} --to NEW_DIR "
        "(docs/emulator.md, Damage and recovery)"
    )


def read_reservation(directory: Path) -> int | None:
    """The reserved position of `directory`; None when it has none yet; `LogDamaged` when it
    cannot be read."""
    path = directory / RESERVED_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) == _RESERVED.size:
        magic, position, crc = _RESERVED.unpack(raw)
        if magic == _RESERVED_MAGIC and crc == zlib.crc32(raw[4:12]):
            return int(position)
    raise LogDamaged(
        path,
        0,
        f"{path} is damaged (it holds the highest position the log may have handed out); "
        "nothing was changed. Copy what is whole into a new data directory with: python -m "
        f"esdb_emulator salvage --from {directory} --to NEW_DIR (docs/emulator.md, Damage and "
        "recovery)",
    )


def write_reservation(directory: Path, position: int) -> int:
    """Make `position` (capped at `MAX_POSITION`) the reserved position of `directory`,
    durably; return it."""
    position = min(position, MAX_POSITION)
    value = struct.pack("<Q", position)
    raw = _RESERVED_MAGIC + value + struct.pack("<I", zlib.crc32(value))
    path = directory / RESERVED_NAME
    new = path.with_name(RESERVED_NAME + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if os.write(fd, raw) != len(raw):
            raise OSError(f"short write to {new}")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(new, path)
    sync_directory(directory)
    return position


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
            f"{directory} is in use by another emulator, scavenge or salvage (process {holder})"
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

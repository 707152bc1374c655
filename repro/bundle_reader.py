"""Reading a bundle in one pass, fast: the events decoded and the file checked as they go.

The decompressed stream is read `CHUNK` bytes at a time and the frames are cut out of each chunk
by one loop (one `unpack` per event for both headers), so that a million events cost a few
seconds. The SHA-256 of the event records is computed in the same pass, and the trailer is
checked when it is reached: a damaged or truncated bundle raises `BundleError` before the
iteration ends, after the events before the damage were handed out.

Hostile input is refused the same way, and costs no more memory than a valid bundle: a frame's
declared length is checked against the largest frame of its kind (`bundle_format`) before any of
it is read, and the stream is read a chunk at a time, so what is held is at most a chunk plus one
frame however much the file expands to. Positions must strictly increase (the order `$all` gives).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from repro.bundle_format import (
    EPOCH,
    EVENT,
    EVENT_HEADER,
    FRAME,
    FRAMED_EVENT_HEADER,
    MAGIC,
    MANIFEST,
    MAX_EVENT_RECORD,
    MAX_JSON_FRAME,
    MICROSECOND,
    TRAILER,
    VERSION,
    ZSTD_MAGIC,
    BundleError,
)
from repro.event_maker import make_event
from usersvc.records import StoredEvent

# Decompressed bytes read at a time: tens of thousands of events, so that the work per read
# (and per batch handed out) is spread over many of them.
CHUNK = 4 << 20
# Bytes wanted at the start of a read: a frame header and an event header.
_DECODE_AHEAD = FRAMED_EVENT_HEADER.size
_WRONG_LENGTH = "the record has the wrong length"
_SHORT = "the record is too short for an event header"
_TIME = "its recorded time is out of range"
_POSITION = struct.Struct("<Q")  # the first field of an event record
_NO_CUTOFF = 1 << 64  # above every position
_TAIL = 1 << 16  # bytes kept from the end of the stream, where the trailer is


def _position(buffer: bytes, frame_at: int) -> int:
    value: int = _POSITION.unpack_from(buffer, frame_at + FRAME.size)[0]
    return value


def _after(buffer: bytes, frame_at: int, until: int) -> bool:
    """Whether the frame at `frame_at` is an event after position `until`."""
    return buffer[frame_at : frame_at + 1] == EVENT and _position(buffer, frame_at) > until


class BundleReader:
    """An open bundle: the manifest read, the events to come. `batches()` reads the rest once;
    then `count`, `first_position` and `last_position` describe what it read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.first_position: int | None = None
        self.last_position: int | None = None
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 (closed in close())
        self._stream = zstandard.ZstdDecompressor().stream_reader(
            self._file, read_across_frames=True
        )
        try:
            self.manifest = self._read_manifest()
        except BaseException:
            self.close()
            raise

    def _read_manifest(self) -> dict[str, Any]:
        path = self.path
        head = self._stream.read(len(MAGIC) + 1)
        if len(head) <= len(MAGIC) and _is_zstd(path):
            raise BundleError(f"{path} is truncated")
        if len(head) <= len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            raise BundleError(f"{path} is not a usersvc bundle")
        if head[len(MAGIC)] != VERSION:
            raise BundleError(f"{path} has bundle format {head[len(MAGIC)]}, not {VERSION}")
        buffer = self._fill(b"", FRAME.size)
        if len(buffer) < FRAME.size:
            raise BundleError(f"{path} has no manifest")
        kind, length = FRAME.unpack_from(buffer)
        if kind != MANIFEST:
            raise BundleError(f"{path} has no manifest")
        if length > MAX_JSON_FRAME:
            raise BundleError(_too_large(path, "its manifest", length, MAX_JSON_FRAME))
        end = FRAME.size + length
        buffer = self._fill(buffer, end)
        if len(buffer) < end:
            raise BundleError(f"{path} is truncated")
        self._buffer, self._offset = buffer, end
        return json_object(path, buffer[FRAME.size : end])

    def close(self) -> None:
        self._stream.close()  # type: ignore[no-untyped-call]
        self._file.close()

    def _fill(self, buffer: bytes, need: int) -> bytes:
        """`buffer` plus what the stream has, until it holds `need` bytes or the input ends.
        Read a chunk at a time, so that what is allocated is what the stream really held."""
        parts = [buffer]
        size = len(buffer)
        while size < need:
            more = self._stream.read(CHUNK)
            if not more:
                break
            parts.append(more)
            size += len(more)
        return b"".join(parts) if len(parts) > 1 else buffer

    def batches(
        self, *, decode: bool, verify: bool, until: int | None = None
    ) -> Iterator[list[StoredEvent]]:
        """The events of each decompressed chunk as a list (nothing when not `decode`), then
        the trailer checked: the count always, the SHA-256 of the event records when `verify`.
        Events after position `until` are not decoded: with `verify` the rest of the file is
        only hashed, to be checked against the trailer; without, reading stops there.
        A damaged record, a truncated file or a trailer that does not match raises `BundleError`
        before the iteration ends."""
        path = self.path
        buffer, offset = self._buffer, self._offset
        digest = hashlib.sha256()
        update = digest.update if verify else None
        last = _NO_CUTOFF if until is None else until
        while True:
            size = len(buffer)
            try:
                if decode:
                    offset, batch = self._decode(buffer, offset, update, last)
                    if batch:
                        yield batch
                    if offset + FRAMED_EVENT_HEADER.size <= size and _after(buffer, offset, last):
                        decode = False
                        if not verify:
                            return
                if not decode:
                    offset = self._hash(buffer, offset, digest.update)
            except ValueError as exc:  # UnicodeDecodeError too
                raise BundleError(f"{path} is corrupt: event {self.count + 1}: {exc}") from None
            # No whole event record at `offset`: the trailer, damage, or the end of the chunk.
            need = _DECODE_AHEAD
            if size - offset >= FRAME.size:
                kind, length = FRAME.unpack_from(buffer, offset)
                _check_frame(path, kind, length, self.count + 1)
                end = offset + FRAME.size + length
                if kind == TRAILER and end <= size:
                    self._check_trailer(buffer[offset + FRAME.size : end], digest, verify)
                    if end < size or self._stream.read(1):
                        raise BundleError(f"{path} has data after its trailer")
                    return
                need = max(end - offset, need)
            rest = buffer[offset:]
            buffer, offset = self._fill(rest, need), 0
            if len(buffer) == len(rest):
                raise BundleError(f"{path} is truncated" + ("" if rest else ": no trailer"))

    def _decode(
        self,
        buffer: bytes,
        offset: int,
        update: Callable[[bytes], None] | None,
        until: int,
    ) -> tuple[int, list[StoredEvent]]:
        """Decode the whole event records from `offset` on, up to position `until` (hashing
        each with `update`); return where the first frame not decoded begins, and the events.
        A record that cannot be an event, or whose position is not after the one before it,
        raises `ValueError`."""
        head, head_size = FRAMED_EVENT_HEADER.unpack_from, FRAMED_EVENT_HEADER.size
        frame_size, event_kind = FRAME.size, EVENT
        fixed = frame_size + EVENT_HEADER.size  # from a frame's start to its stream name
        make, epoch, micro = make_event, EPOCH, MICROSECOND
        size = len(buffer)
        batch: list[StoredEvent] = []
        append = batch.append
        previous = -1 if self.last_position is None else self.last_position
        try:
            while offset + head_size <= size:
                (
                    kind, length, position, revision, micros, raw_id,
                    n_stream, n_type, n_ctype, n_data, n_meta,
                ) = head(buffer, offset)  # fmt: skip
                stop = offset + frame_size + length
                if kind != event_kind or stop > size or position > until:
                    break
                if position <= previous:
                    raise ValueError(_out_of_order(position, previous))
                previous = position
                a = offset + fixed + n_stream
                b = a + n_type
                c = b + n_ctype
                d = c + n_data
                if d + n_meta != stop:
                    raise ValueError(_WRONG_LENGTH)
                if update is not None:
                    update(buffer[offset + frame_size : stop])
                append(
                    make(
                        position,
                        buffer[offset + fixed : a].decode(),
                        revision,
                        raw_id,
                        buffer[a:b].decode(),
                        buffer[c:d],
                        buffer[d:stop],
                        buffer[b:c].decode(),
                        epoch + micros * micro,
                    )
                )
                offset = stop
        except ValueError:  # UnicodeDecodeError too: count the events before it
            self._count(batch)
            raise
        except OverflowError:  # a time outside what `datetime` can hold
            self._count(batch)
            raise ValueError(_TIME) from None
        self._count(batch)
        return offset, batch

    def _count(self, batch: list[StoredEvent]) -> None:
        if batch:
            self.count += len(batch)
            if self.first_position is None:
                self.first_position = batch[0].commit_position
            self.last_position = batch[-1].commit_position

    def _hash(self, buffer: bytes, offset: int, update: Callable[[bytes], None]) -> int:
        """Hash the whole event records from `offset` on, without decoding them; return where
        the first frame that is not one begins. Raise `ValueError` as `_decode` does for a
        record too short for an event header or a position not after the one before it."""
        frame, frame_size, event_kind = FRAME.unpack_from, FRAME.size, EVENT
        shortest = EVENT_HEADER.size
        size = len(buffer)
        previous = -1 if self.last_position is None else self.last_position
        first: int | None = None
        count = 0
        try:
            while offset + frame_size <= size:
                kind, length = frame(buffer, offset)
                stop = offset + frame_size + length
                if kind != event_kind or stop > size:
                    break
                if length < shortest:
                    raise ValueError(_SHORT)
                position = _position(buffer, offset)
                if position <= previous:
                    raise ValueError(_out_of_order(position, previous))
                update(buffer[offset + frame_size : stop])
                if first is None:
                    first = position
                previous = position
                count += 1
                offset = stop
        finally:  # count the events before a damaged one too
            if count:
                self.count += count
                if self.first_position is None:
                    self.first_position = first
                self.last_position = previous
        return offset

    def trailer_at_end(self) -> dict[str, Any]:
        """The trailer, found at the end of the decompressed stream without walking the frames
        (decompressing costs a fifth of checking): nothing is checked but that the last bytes
        are a trailer frame holding a JSON object."""
        tail = self._buffer[self._offset :]
        while more := self._stream.read(CHUNK):
            tail = more[-_TAIL:] if len(more) >= _TAIL else (tail + more)[-_TAIL:]
        at = len(tail)
        while (at := tail.rfind(TRAILER, 0, at)) >= 0:
            if len(tail) - at >= FRAME.size and FRAME.unpack_from(tail, at)[1] == (
                len(tail) - at - FRAME.size
            ):
                return json_object(self.path, tail[at + FRAME.size :])
        raise BundleError(f"{self.path} is truncated: no trailer")

    def _check_trailer(self, payload: bytes, digest: Any, verify: bool) -> None:
        trailer = json_object(self.path, payload)
        if (
            trailer.get("count") != self.count
            or trailer.get("firstPosition") != self.first_position
            or trailer.get("lastPosition") != self.last_position
            or (verify and trailer.get("sha256") != digest.hexdigest())
        ):
            raise BundleError(f"{self.path} is corrupt: its content does not match its trailer")


@contextmanager
def open_bundle(path: Path) -> Iterator[BundleReader]:
    """A `BundleReader` on `path`, closed on leaving; the errors of opening and decompressing
    the file are raised as `BundleError`."""
    try:
        reader = BundleReader(path)
        try:
            yield reader
        finally:
            reader.close()
    except zstandard.ZstdError as exc:
        raise BundleError(f"{path} is corrupt or truncated: {exc}") from None
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise BundleError(f"{path} is a directory, not a bundle") from None


def _check_frame(path: Path, kind: bytes, length: int, number: int) -> None:
    """Refuse a frame after the manifest that is not an event or the trailer, or whose declared
    length its kind cannot have, before any of its payload is read (`number`: of the event)."""
    if kind == EVENT:
        if length < EVENT_HEADER.size:
            raise BundleError(f"{path} is corrupt: event {number}: {_SHORT}")
        if length > MAX_EVENT_RECORD:
            raise BundleError(_too_large(path, f"event {number}", length, MAX_EVENT_RECORD))
    elif kind == TRAILER:
        if length > MAX_JSON_FRAME:
            raise BundleError(_too_large(path, "its trailer", length, MAX_JSON_FRAME))
    else:
        raise BundleError(f"{path} is corrupt: unknown frame {kind!r}")


def _too_large(path: Path, what: str, length: int, limit: int) -> str:
    return (
        f"{path} is corrupt: {what} declares {length:,} bytes, more than the {limit:,}"
        " a bundle allows (refused before reading it)"
    )


def _out_of_order(position: int, previous: int) -> str:
    return (
        f"its position {position} is not after the position before it ({previous});"
        " positions in a bundle strictly increase"
    )


def json_object(path: Path, payload: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise BundleError(f"{path} is corrupt: a manifest or trailer is not a JSON object")
    return value


def _is_zstd(path: Path) -> bool:
    with open(path, "rb") as raw:
        return raw.read(4) == ZSTD_MAGIC

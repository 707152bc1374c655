"""Bundles: a portable, compressed, streamable file of recorded events, for offline repro.

Layout, inside one zstd stream:
    b"USVCBNDL" | version (1 byte) | frames...
A frame is `kind (1 byte) | length (u32 LE) | payload`:
    b"M" the manifest (JSON: source, range, created, code version, redaction, ...), first;
    b"E" one event (binary, see `_EVENT`), any number, in `$all` order;
    b"T" the trailer (JSON: count, first/last position, SHA-256 of every event payload), last.
A reader checks the trailer against what it read, so a truncated or corrupt bundle is refused
with a `BundleError` saying which. `read_bundle` verifies the whole file before yielding
anything, so a consumer never acts on a bundle that turns out to be damaged.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson
import zstandard

from usersvc.records import StoredEvent

MAGIC = b"USVCBNDL"
VERSION = 1
_FRAME = struct.Struct("<cI")
# position, revision, recorded_at (µs since epoch), id, len(stream), len(type), len(content
# type), len(data), len(metadata)
_EVENT = struct.Struct("<QQq16sHHHII")
_unpack = _EVENT.unpack_from
_POSITION = struct.Struct("<Q")  # the first field of an event record
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class BundleError(ValueError):
    """The file is not a bundle, or is truncated or corrupt."""


def _encode(event: StoredEvent) -> bytes:
    stream, type_, ctype = event.stream.encode(), event.type.encode(), event.content_type.encode()
    micros = (event.recorded_at - _EPOCH) // _MICRO
    return b"".join(
        (
            _EVENT.pack(
                event.commit_position,
                event.revision,
                micros,
                event.event_id.bytes,
                len(stream),
                len(type_),
                len(ctype),
                len(event.data),
                len(event.metadata),
            ),
            stream,
            type_,
            ctype,
            event.data,
            event.metadata,
        )
    )


def _decode(payload: bytes) -> StoredEvent:
    (position, revision, micros, raw_id, n_stream, n_type, n_ctype, n_data, n_meta) = _unpack(
        payload
    )
    a = _EVENT.size + n_stream
    b = a + n_type
    c = b + n_ctype
    d = c + n_data
    if d + n_meta != len(payload):
        raise ValueError("the record has the wrong length")
    return StoredEvent(
        position,
        payload[_EVENT.size : a].decode(),
        revision,
        UUID(bytes=raw_id),
        payload[a:b].decode(),
        payload[c:d],
        payload[d:],
        payload[b:c].decode(),
        _EPOCH + micros * _MICRO,
    )


class BundleWriter:
    """Write a bundle incrementally: `with BundleWriter(path, manifest) as w: w.write(e)`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._zstd = zstandard.ZstdCompressor(level=3).stream_writer(self._file)
        self._hash = hashlib.sha256()
        self.count = 0
        self.first_position: int | None = None
        self.last_position: int | None = None
        self._zstd.write(MAGIC + bytes([VERSION]))
        self._frame(b"M", orjson.dumps(manifest))

    def _frame(self, kind: bytes, payload: bytes) -> None:
        self._zstd.write(_FRAME.pack(kind, len(payload)))
        self._zstd.write(payload)

    def write(self, event: StoredEvent) -> None:
        if self.last_position is not None and event.commit_position <= self.last_position:
            raise BundleError("events must be written in increasing position order")
        payload = _encode(event)
        self._hash.update(payload)
        self._frame(b"E", payload)
        self.count += 1
        if self.first_position is None:
            self.first_position = event.commit_position
        self.last_position = event.commit_position

    def trailer(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "firstPosition": self.first_position,
            "lastPosition": self.last_position,
            "sha256": self._hash.hexdigest(),
        }

    def close(self) -> dict[str, Any]:
        trailer = self.trailer()
        self._frame(b"T", orjson.dumps(trailer))
        self._zstd.close()  # type: ignore[no-untyped-call]
        return trailer

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._zstd.close()  # type: ignore[no-untyped-call]
            self.path.unlink(missing_ok=True)


def write_bundle(
    path: Path, events: Iterable[StoredEvent], manifest: dict[str, Any]
) -> dict[str, Any]:
    with BundleWriter(path, manifest) as writer:
        for event in events:
            writer.write(event)
        return writer.trailer()


_CHUNK = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _frames(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(kind, payload) of each frame. Decompresses in large chunks and cuts frames out of them:
    one `read` per frame would cost more than everything else a reader does."""
    try:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            buffer = reader.read(len(MAGIC) + 1)
            if len(buffer) <= len(MAGIC) and _is_zstd(path):
                raise BundleError(f"{path} is truncated")
            if len(buffer) <= len(MAGIC) or buffer[: len(MAGIC)] != MAGIC:
                raise BundleError(f"{path} is not a usersvc bundle")
            if buffer[len(MAGIC)] != VERSION:
                raise BundleError(f"{path} has bundle format {buffer[len(MAGIC)]}, not {VERSION}")
            buffer, offset = b"", 0
            unpack, header = _FRAME.unpack_from, _FRAME.size
            while True:
                if len(buffer) - offset < header:
                    buffer, offset = _fill(reader, buffer[offset:], header), 0
                    if not buffer:
                        return
                    if len(buffer) < header:
                        raise BundleError(f"{path} is truncated")
                kind, length = unpack(buffer, offset)
                end = offset + header + length
                if end > len(buffer):
                    buffer = _fill(reader, buffer[offset:], header + length)
                    offset, end = 0, header + length
                    if end > len(buffer):
                        raise BundleError(f"{path} is truncated")
                yield kind, buffer[offset + header : end]
                offset = end
    except zstandard.ZstdError as exc:
        raise BundleError(f"{path} is corrupt or truncated: {exc}") from None
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise BundleError(f"{path} is a directory, not a bundle") from None


def _is_zstd(path: Path) -> bool:
    with open(path, "rb") as raw:
        return raw.read(4) == _ZSTD_MAGIC


def _fill(reader: Any, buffer: bytes, need: int) -> bytes:
    """`buffer` plus what the reader has, until it holds `need` bytes or the input ends."""
    parts = [buffer]
    size = len(buffer)
    while size < need:
        more = reader.read(max(_CHUNK, need - size))
        if not more:
            break
        parts.append(more)
        size += len(more)
    return b"".join(parts)


def _scan(path: Path, *, decode: bool = True) -> Iterator[StoredEvent | bytes | dict[str, Any]]:
    """Yield the manifest (a dict), then each event (decoded, or its raw record), checking the
    trailer at the end."""
    digest = hashlib.sha256()
    update = digest.update
    count = 0
    frames = _frames(path)
    first = next(frames, None)
    if first is None or first[0] != b"M":
        raise BundleError(f"{path} has no manifest")
    yield _json_object(path, first[1])
    for kind, payload in frames:
        if kind == b"E":
            update(payload)
            count += 1
            if not decode:
                yield payload
                continue
            try:
                event = _decode(payload)
            except (struct.error, UnicodeDecodeError, ValueError) as exc:
                raise BundleError(f"{path} is corrupt: event {count}: {exc}") from None
            yield event
        elif kind == b"T":
            trailer = _json_object(path, payload)
            if trailer.get("count") != count or trailer.get("sha256") != digest.hexdigest():
                raise BundleError(f"{path} is corrupt: its content does not match its trailer")
            if next(frames, None) is not None:
                raise BundleError(f"{path} has data after its trailer")
            return
        else:
            raise BundleError(f"{path} is corrupt: unknown frame {kind!r}")
    raise BundleError(f"{path} is truncated: no trailer")


def _json_object(path: Path, payload: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise BundleError(f"{path} is corrupt: a manifest or trailer is not a JSON object")
    return value


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, without reading the events (no integrity check)."""
    for item in _scan(path):
        assert isinstance(item, dict)
        return item
    raise BundleError(f"{path} has no manifest")


def verify_bundle(path: Path) -> dict[str, Any]:
    """Read the whole bundle and check it; return the manifest plus `count`, `firstPosition`
    and `lastPosition` (None for an empty bundle)."""
    manifest: dict[str, Any] = {}
    count = 0
    first: int | None = None
    payload = b""
    for item in _scan(path, decode=False):
        if isinstance(item, dict):
            manifest = item
        else:
            assert isinstance(item, bytes)
            payload = item
            if first is None:
                first = _POSITION.unpack_from(payload)[0]
            count += 1
    last = _POSITION.unpack_from(payload)[0] if count else None
    return {**manifest, "count": count, "firstPosition": first, "lastPosition": last}


def read_bundle(path: Path, *, verify: bool = True) -> Iterator[StoredEvent]:
    """The events of a bundle in order; with `verify` the whole file is checked first."""
    if verify:
        verify_bundle(path)
    for item in _scan(path):
        if isinstance(item, StoredEvent):
            yield item

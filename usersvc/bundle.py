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
    (position, revision, micros, raw_id, n_stream, n_type, n_ctype, n_data, n_meta) = (
        _EVENT.unpack_from(payload)
    )
    offset = _EVENT.size
    parts = []
    for size in (n_stream, n_type, n_ctype, n_data, n_meta):
        parts.append(payload[offset : offset + size])
        offset += size
    if offset != len(payload):
        raise BundleError("an event record has the wrong length")
    return StoredEvent(
        commit_position=position,
        stream=parts[0].decode(),
        revision=revision,
        event_id=UUID(bytes=raw_id),
        type=parts[1].decode(),
        data=parts[3],
        metadata=parts[4],
        content_type=parts[2].decode(),
        recorded_at=_EPOCH + micros * _MICRO,
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
        self.first_position = self.first_position or event.commit_position
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


def _frames(path: Path) -> Iterator[tuple[bytes, bytes]]:
    try:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            head = reader.read(len(MAGIC) + 1)
            if head[: len(MAGIC)] != MAGIC:
                raise BundleError(f"{path} is not a usersvc bundle")
            if head[len(MAGIC)] != VERSION:
                raise BundleError(f"{path} has bundle format {head[len(MAGIC)]}, not {VERSION}")
            while True:
                header = reader.read(_FRAME.size)
                if not header:
                    return
                if len(header) < _FRAME.size:
                    raise BundleError(f"{path} is truncated")
                kind, length = _FRAME.unpack(header)
                payload = reader.read(length)
                if len(payload) < length:
                    raise BundleError(f"{path} is truncated")
                yield kind, payload
    except zstandard.ZstdError as exc:
        raise BundleError(f"{path} is corrupt or truncated: {exc}") from None
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist") from None


def _scan(path: Path) -> Iterator[StoredEvent | dict[str, Any]]:
    """Yield the manifest (a dict), then each event, checking the trailer at the end."""
    digest = hashlib.sha256()
    count = 0
    frames = _frames(path)
    first = next(frames, None)
    if first is None or first[0] != b"M":
        raise BundleError(f"{path} has no manifest")
    yield dict(orjson.loads(first[1]))
    for kind, payload in frames:
        if kind == b"E":
            digest.update(payload)
            count += 1
            yield _decode(payload)
        elif kind == b"T":
            trailer = orjson.loads(payload)
            if trailer.get("count") != count or trailer.get("sha256") != digest.hexdigest():
                raise BundleError(f"{path} is corrupt: its content does not match its trailer")
            if next(frames, None) is not None:
                raise BundleError(f"{path} has data after its trailer")
            return
        else:
            raise BundleError(f"{path} is corrupt: unknown frame {kind!r}")
    raise BundleError(f"{path} is truncated: no trailer")


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, without reading the events (no integrity check)."""
    for item in _scan(path):
        assert isinstance(item, dict)
        return item
    raise BundleError(f"{path} has no manifest")


def verify_bundle(path: Path) -> dict[str, Any]:
    """Read the whole bundle and check it; return the manifest plus `count`."""
    manifest: dict[str, Any] = {}
    count = 0
    for item in _scan(path):
        if isinstance(item, dict):
            manifest = item
        else:
            count += 1
    return {**manifest, "count": count}


def read_bundle(path: Path, *, verify: bool = True) -> Iterator[StoredEvent]:
    """The events of a bundle in order; with `verify` the whole file is checked first."""
    if verify:
        verify_bundle(path)
    for item in _scan(path):
        if not isinstance(item, dict):
            yield item

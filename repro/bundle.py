"""Bundles: a portable, compressed, streamable file of recorded events, for offline repro.

Layout, inside one zstd stream (the constants: `repro.bundle_format`):
    b"USVCBNDL" | version (1 byte) | frames...
A frame is `kind (1 byte) | length (u32 LE) | payload`:
    b"M" the manifest (JSON: source, range, created, code version, redaction, ...), first;
    b"E" one event (binary, see `EVENT_HEADER`), any number, in `$all` order;
    b"T" the trailer (JSON: count, first/last position, SHA-256 of every event payload), last.
A reader checks the trailer against what it read, so a truncated or corrupt bundle is refused
with a `BundleError` saying which. `read_bundle` checks in the same pass as it yields the events
(`repro.bundle_reader`): the error comes before the iteration ends, so a consumer that applies
the events inside one transaction rolls them back. `verify_bundle` checks a whole bundle without
yielding anything, for a consumer that must know before it acts. A frame larger than its kind may
be (an event record over EventStoreDB's 16 MiB, a manifest or trailer over 60 KiB) is refused by
the reader before it is read, and never written; positions strictly increase.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from repro.bundle_format import (
    EPOCH,
    EVENT,
    EVENT_HEADER,
    FRAME,
    MAGIC,
    MANIFEST,
    MAX_EVENT_RECORD,
    MAX_JSON_FRAME,
    MICROSECOND,
    TRAILER,
    VERSION,
    BundleError,
)
from repro.bundle_reader import open_bundle
from usersvc.records import StoredEvent

__all__ = [
    "MAGIC",
    "VERSION",
    "BundleError",
    "BundleWriter",
    "read_batches",
    "read_bundle",
    "read_manifest",
    "read_trailer",
    "verify_bundle",
    "write_bundle",
]


def _encode(event: StoredEvent) -> bytes:
    stream, type_, ctype = event.stream.encode(), event.type.encode(), event.content_type.encode()
    micros = (event.recorded_at - EPOCH) // MICROSECOND
    return b"".join(
        (
            EVENT_HEADER.pack(
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


class BundleWriter:
    """Write a bundle incrementally: `with BundleWriter(path, manifest) as w: w.write(e)`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        encoded = orjson.dumps(manifest)
        if len(encoded) > MAX_JSON_FRAME:
            raise BundleError(
                f"the manifest has {len(encoded):,} bytes, more than a bundle allows"
                f" ({MAX_JSON_FRAME:,})"
            )
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._zstd = zstandard.ZstdCompressor(level=3).stream_writer(self._file)
        self._hash = hashlib.sha256()
        self.count = 0
        self.first_position: int | None = None
        self.last_position: int | None = None
        self._zstd.write(MAGIC + bytes([VERSION]))
        self._frame(MANIFEST, encoded)

    def _frame(self, kind: bytes, payload: bytes) -> None:
        self._zstd.write(FRAME.pack(kind, len(payload)))
        self._zstd.write(payload)

    def write(self, event: StoredEvent) -> None:
        if self.last_position is not None and event.commit_position <= self.last_position:
            raise BundleError("events must be written in increasing position order")
        payload = _encode(event)
        if len(payload) > MAX_EVENT_RECORD:
            raise BundleError(
                f"the event at position {event.commit_position} has {len(payload):,} bytes,"
                f" more than a bundle allows ({MAX_EVENT_RECORD:,})"
            )
        self._hash.update(payload)
        self._frame(EVENT, payload)
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
        self._frame(TRAILER, orjson.dumps(trailer))
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


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, without reading the events (no integrity check)."""
    with open_bundle(path) as reader:
        return reader.manifest


def verify_bundle(path: Path) -> dict[str, Any]:
    """Read the whole bundle and check it; return the manifest plus `count`, `firstPosition`
    and `lastPosition` (None for an empty bundle)."""
    with open_bundle(path) as reader:
        for _ in reader.batches(decode=False, verify=True):
            pass
        return {
            **reader.manifest,
            "count": reader.count,
            "firstPosition": reader.first_position,
            "lastPosition": reader.last_position,
        }


def read_trailer(path: Path) -> dict[str, Any]:
    """The manifest plus the trailer's `count`, `firstPosition` and `lastPosition`, found at
    the end of the file without decoding or checking the events (about a quarter of
    `verify_bundle`'s time): for an estimate or a range before a replay that checks the
    bundle as it applies it (`read_bundle` with `verify`). A file whose last frame is not a
    trailer is refused as truncated."""
    with open_bundle(path) as reader:
        trailer = reader.trailer_at_end()
        return {
            **reader.manifest,
            "count": trailer.get("count"),
            "firstPosition": trailer.get("firstPosition"),
            "lastPosition": trailer.get("lastPosition"),
        }


def read_batches(
    path: Path, *, verify: bool = True, until: int | None = None
) -> Iterator[list[StoredEvent]]:
    """The events of a bundle in order, in lists of tens of thousands (one per decompressed
    chunk), checked in the same pass: always the file's structure and the count, and with
    `verify` the SHA-256 of every event record. A damaged or truncated bundle raises
    `BundleError` before the iteration ends, possibly after events were yielded.

    With `until`, only the events up to that position are decoded and yielded; with `verify`
    the rest of the file is still read (hashed, not decoded: about a fifth of the cost) and
    checked before the iteration ends, so a cutoff replay checks the whole bundle too."""
    with open_bundle(path) as reader:
        yield from reader.batches(decode=True, verify=verify, until=until)


def read_bundle(
    path: Path, *, verify: bool = True, until: int | None = None
) -> Iterator[StoredEvent]:
    """The events of a bundle in order, checked in the same pass as `read_batches` says."""
    for batch in read_batches(path, verify=verify, until=until):
        yield from batch

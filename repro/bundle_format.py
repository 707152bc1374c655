"""The byte layout of a bundle, shared by its writer and its reader (see `repro.bundle`)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

MAGIC = b"USVCBNDL"
VERSION = 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# kind (b"M", b"E" or b"T"), length of the payload that follows
FRAME = struct.Struct("<cI")
MANIFEST, EVENT, TRAILER = b"M", b"E", b"T"
# An event record: position, revision, recorded_at (µs since epoch), id, len(stream),
# len(type), len(content type), len(data), len(metadata); then those five fields' bytes.
EVENT_HEADER = struct.Struct("<QQq16sHHHII")
# A frame header directly followed by an event header, read with one `unpack`.
FRAMED_EVENT_HEADER = struct.Struct(FRAME.format + EVENT_HEADER.format.lstrip("<"))
# The largest frames a reader accepts, checked on a frame's header before its payload is read: a
# declared length is never allocated, and a compressed file cannot make the reader hold more than
# one frame of these sizes (plus a read chunk), whatever it expands to. An event record holds at
# most what EventStoreDB holds in one log record (16 MiB: stream, type, data, metadata) plus the
# fixed header; the manifest and the trailer are small JSON objects (the trailer is looked for in
# the last 64 KiB of the stream).
MAX_EVENT_RECORD = EVENT_HEADER.size + (16 << 20)
MAX_JSON_FRAME = 60 << 10
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class BundleError(ValueError):
    """The file is not a bundle, or is truncated or corrupt."""

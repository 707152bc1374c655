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
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class BundleError(ValueError):
    """The file is not a bundle, or is truncated or corrupt."""

"""The emulator's data model, with no gRPC: records, the store (streams and `$all` under the real
server's rules), the expected-version decisions, the write-ahead log that makes it durable (and
its format, `frames`), scavenging (its rules, and the server's background operation), and
salvaging a damaged log into a new data directory."""

from esdb_emulator.model.decisions import ANY, NO_STREAM, STREAM_EXISTS
from esdb_emulator.model.errors import (
    BadRequest,
    MaximumAppendSizeExceeded,
    StoreError,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
)
from esdb_emulator.model.records import MAX_REVISION, AppendResult, ImportedEvent, Proposed, Record
from esdb_emulator.model.store import Store

__all__ = [
    "ANY",
    "MAX_REVISION",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "BadRequest",
    "ImportedEvent",
    "MaximumAppendSizeExceeded",
    "Proposed",
    "Record",
    "Store",
    "StoreError",
    "StreamDeleted",
    "StreamNotFound",
    "WrongExpectedVersion",
]

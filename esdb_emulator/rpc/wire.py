"""Protobuf ⇄ model conversion shared by the servicers: events, ids, expected versions, filters,
append results. The texts and codes of refusals live in `statuses`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from esdbclient.protos.Grpc import shared_pb2, streams_pb2

from esdb_emulator.model import ANY, NO_STREAM, STREAM_EXISTS, BadRequest, Proposed, Record

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
REQUIRED_METADATA = ("type", "content-type")
_U64 = 0xFFFFFFFFFFFFFFFF
ReadResp = streams_pb2.ReadResp


class MissingMetadata(BadRequest):
    """A proposed event lacks one of `REQUIRED_METADATA`."""

    def __init__(self, key: str) -> None:
        super().__init__(f"metadata {key!r} is missing")
        self.key = key


def expected_from(options: Any, revision_field: str) -> int:
    """The expected version of an Append/BatchAppend/Delete/Tombstone options message."""
    kind = options.WhichOneof(
        "expected_stream_revision" if revision_field == "revision" else "expected_stream_position"
    )
    if kind == revision_field:
        return int(getattr(options, revision_field))
    if kind == "no_stream":
        return NO_STREAM
    if kind == "stream_exists":
        return STREAM_EXISTS
    if kind == "any":
        return ANY
    raise BadRequest("expected stream revision is missing")


def parse_uuid(message: shared_pb2.UUID) -> uuid.UUID:
    kind = message.WhichOneof("value")
    try:
        if kind == "string":
            return uuid.UUID(message.string)
        if kind == "structured":
            high = message.structured.most_significant_bits & _U64
            low = message.structured.least_significant_bits & _U64
            return uuid.UUID(int=(high << 64) | low)
    except ValueError:
        raise BadRequest(f"invalid event id {message.string!r}") from None
    raise BadRequest("event id is missing")


def proposed_from(message: Any) -> Proposed:
    metadata = message.metadata
    for key in REQUIRED_METADATA:
        if key not in metadata:
            raise MissingMetadata(key)
    return Proposed(
        event_id=parse_uuid(message.id),
        type=metadata["type"],
        is_json=metadata["content-type"] == JSON,
        data=message.data,
        metadata=message.custom_metadata,
    )


def uuid_message(value: uuid.UUID, as_string: bool) -> shared_pb2.UUID:
    if as_string:
        return shared_pb2.UUID(string=str(value))
    number = value.int
    high, low = number >> 64, number & _U64
    return shared_pb2.UUID(
        structured=shared_pb2.UUID.Structured(
            most_significant_bits=high - (1 << 64) if high >= 1 << 63 else high,
            least_significant_bits=low - (1 << 64) if low >= 1 << 63 else low,
        )
    )


def fill_success(success: Any, revision: int | None, position: int | None) -> None:
    """An AppendResp.Success or BatchAppendResp.Success (the same fields)."""
    if revision is None:
        success.no_stream.SetInParent()
    else:
        success.current_revision = revision
    if position is None:
        success.no_position.SetInParent()
    else:
        success.position.commit_position = position
        success.position.prepare_position = position


def event_response(record: Record, uuid_as_string: bool) -> bytes:
    """The serialized ReadResp of one event; cached on the record for string UUIDs."""
    if uuid_as_string and record.wire is not None:
        return record.wire
    message = ReadResp(
        event=ReadResp.ReadEvent(
            event=ReadResp.ReadEvent.RecordedEvent(
                id=uuid_message(record.event_id, uuid_as_string),
                stream_identifier=shared_pb2.StreamIdentifier(stream_name=record.stream.encode()),
                stream_revision=record.revision,
                prepare_position=record.position,
                commit_position=record.position,
                metadata={
                    "type": record.type,
                    "created": str(record.created),
                    "content-type": JSON if record.is_json else OCTET_STREAM,
                },
                custom_metadata=record.metadata,
                data=record.data,
            ),
            commit_position=record.position,
        )
    )
    wire: bytes = message.SerializeToString()
    if uuid_as_string:
        record.wire = wire
    return wire


def _stream_of(record: Record) -> str:
    return record.stream


def _type_of(record: Record) -> str:
    return record.type


def compile_filter(options: Any) -> Callable[[Record], bool] | None:
    """The server-side filter of a `$all` read or subscription, or None for no filter."""
    if options.WhichOneof("filter_option") != "filter":
        return None
    spec = options.filter
    kind = spec.WhichOneof("filter")
    expression = getattr(spec, kind)
    field: Callable[[Record], str] = _stream_of if kind == "stream_identifier" else _type_of
    if expression.regex:
        try:
            pattern = re.compile(expression.regex)
        except re.error as exc:
            raise BadRequest(f"invalid filter regex {expression.regex!r}: {exc}") from None
        return lambda record: pattern.search(field(record)) is not None
    prefixes = tuple(expression.prefix)
    return lambda record: field(record).startswith(prefixes)

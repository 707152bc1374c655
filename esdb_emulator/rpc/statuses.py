"""The real server's answers to refused requests, in one place: gRPC status codes, detail texts
and trailers of the unary paths, the error replies of BatchAppend, and the wrong-expected-version
replies. Clients match on these strings, so each is the real server's (24.10)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from esdbclient.protos.Grpc import code_pb2, shared_pb2, status_pb2, streams_pb2
from google.protobuf import any_pb2, empty_pb2

from esdb_emulator.model import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    BadRequest,
    MaximumAppendSizeExceeded,
    StreamDeleted,
    WrongExpectedVersion,
)
from esdb_emulator.rpc.wire import REQUIRED_METADATA, MissingMetadata

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Refusal:
    code: grpc.StatusCode
    details: str
    trailers: dict[str, str] = field(default_factory=dict)


def abort(context: grpc.ServicerContext, refusal: Refusal) -> NoReturn:
    context.set_trailing_metadata(tuple(refusal.trailers.items()))
    context.abort(refusal.code, refusal.details)
    raise AssertionError("unreachable")


# -- unary paths (Append, Delete, Tombstone, Read, StopScavenge) -----------------------------------


def stream_deleted(stream: str) -> Refusal:
    return Refusal(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Event stream '{stream}' is deleted.",
        {"exception": "stream-deleted", "stream-name": stream},
    )


def append_without_options() -> Refusal:
    return Refusal(
        grpc.StatusCode.UNKNOWN, "The first message of an append must carry its options."
    )


def append_refused(error: StreamDeleted | MaximumAppendSizeExceeded | BadRequest) -> Refusal:
    if isinstance(error, StreamDeleted):
        return stream_deleted(error.stream)
    if isinstance(error, MaximumAppendSizeExceeded):
        return Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            _maximum_append_size(error.limit),
            {"exception": "maximum-append-size-exceeded", "maximum-append-size": str(error.limit)},
        )
    if isinstance(error, MissingMetadata):
        return Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            _missing_metadata(error.key),
            {
                "exception": "missing-required-metadata-property",
                "required-metadata-properties": ",".join(REQUIRED_METADATA),
            },
        )
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(error), {"exception": "bad-request"})


def delete_refused(
    stream: str, error: WrongExpectedVersion | StreamDeleted | BadRequest
) -> Refusal:
    """Delete and Tombstone alike (the real server names both "Delete")."""
    if isinstance(error, WrongExpectedVersion):
        return Refusal(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"Delete failed due to WrongExpectedVersion. Stream: {stream}, "
            f"Expected version: {error.expected}, Actual version: {error.current}",
            {
                "exception": "wrong-expected-version",
                "stream-name": stream,
                "expected-version": str(error.expected),
                "actual-version": str(error.current),
            },
        )
    if isinstance(error, StreamDeleted):
        return stream_deleted(error.stream)
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def read_refused(error: StreamDeleted | BadRequest) -> Refusal:
    if isinstance(error, StreamDeleted):
        return stream_deleted(error.stream)
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def invalid_read_combination(
    target: str | None, count: str | None, backwards: bool, filter_: str | None
) -> Refusal:
    direction = "Backwards" if backwards else "Forwards"
    return Refusal(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"The combination of ({target}, {count}, {direction}, {filter_}) is invalid.",
    )


def scavenge_not_found(running: str | None) -> Refusal:
    """StopScavenge of an id that is not running; the trailer names the one running, if any."""
    return Refusal(
        grpc.StatusCode.NOT_FOUND,
        "Scavenge id was invalid.",
        {"exception": "scavenge-not-found", "scavenge-id": running or ""},
    )


def _maximum_append_size(limit: int) -> str:
    return f"Maximum Append Size of {limit} Exceeded."


def _missing_metadata(key: str) -> str:
    return f"Required Metadata Property '{key}' is missing"


# -- BatchAppend: errors travel inside the reply --------------------------------------------------


def batch_refused(
    request: Any,
    error: WrongExpectedVersion | StreamDeleted | MaximumAppendSizeExceeded | BadRequest,
) -> Any:
    """The BatchAppendResp refusing the batch that `request` (its first chunk) opened."""
    if isinstance(error, WrongExpectedVersion):
        wev = shared_wrong_expected_version(error)
        return _batch_error(request, "WrongExpectedVersion", wev, code_pb2.ALREADY_EXISTS)
    if isinstance(error, StreamDeleted):
        identifier = shared_pb2.StreamIdentifier(stream_name=error.stream.encode())
        detail = shared_pb2.StreamDeleted(stream_identifier=identifier)
        return _batch_error(request, "StreamDeleted", detail, code_pb2.NOT_FOUND)
    if isinstance(error, MaximumAppendSizeExceeded):
        detail = shared_pb2.MaximumAppendSizeExceeded(maxAppendSize=error.limit)
        return _batch_error(request, "MaximumAppendSizeExceeded", detail, code_pb2.INVALID_ARGUMENT)
    message = _missing_metadata(error.key) if isinstance(error, MissingMetadata) else str(error)
    return _batch_error(
        request, "BadRequest", shared_pb2.BadRequest(message=message), code_pb2.INVALID_ARGUMENT
    )


def batch_timed_out(request: Any) -> Any:
    return _batch_error(request, "Timeout", shared_pb2.Timeout(), code_pb2.DEADLINE_EXCEEDED)


def batch_without_options(request: Any) -> Any:
    detail = shared_pb2.BadRequest(message="the first chunk of a batch must carry its options")
    return _batch_error(request, "BadRequest", detail, code_pb2.INVALID_ARGUMENT)


def _batch_error(request: Any, message: str, detail: Any, code: Any) -> Any:
    # `code` is an esdbclient.rpc.Code (the numbers of google.rpc.Code).
    details = any_pb2.Any()
    details.Pack(detail)
    response = streams_pb2.BatchAppendResp(
        correlation_id=request.correlation_id,
        error=status_pb2.Status(code=code, message=message, details=details),
    )
    if request.HasField("options"):
        response.stream_identifier.stream_name = request.options.stream_identifier.stream_name
    return response


# -- wrong expected version: a reply, not a status ------------------------------------------------


def append_wrong_expected_version(error: WrongExpectedVersion) -> Any:
    """AppendResp.WrongExpectedVersion, with the 20.6.0 fields old clients read filled too."""
    wev = streams_pb2.AppendResp.WrongExpectedVersion()
    if error.current < 0:
        wev.current_no_stream.SetInParent()
        wev.no_stream_20_6_0.SetInParent()
    else:
        wev.current_revision = error.current
        wev.current_revision_20_6_0 = error.current
    if error.expected >= 0:
        wev.expected_revision = error.expected
        wev.expected_revision_20_6_0 = error.expected
    elif error.expected == ANY:
        wev.expected_any.SetInParent()
        wev.any_20_6_0.SetInParent()
    elif error.expected == STREAM_EXISTS:
        wev.expected_stream_exists.SetInParent()
        wev.stream_exists_20_6_0.SetInParent()
    else:
        wev.expected_no_stream.SetInParent()
        wev.expected_revision_20_6_0 = _U64
    return wev


def shared_wrong_expected_version(error: WrongExpectedVersion) -> Any:
    wev = shared_pb2.WrongExpectedVersion()
    if error.current < 0:
        wev.current_no_stream.CopyFrom(empty_pb2.Empty())
    else:
        wev.current_stream_revision = error.current
    if error.expected >= 0:
        wev.expected_stream_position = error.expected
    elif error.expected == ANY:
        wev.expected_any.CopyFrom(empty_pb2.Empty())
    elif error.expected == STREAM_EXISTS:
        wev.expected_stream_exists.CopyFrom(empty_pb2.Empty())
    elif error.expected == NO_STREAM:
        wev.expected_no_stream.CopyFrom(empty_pb2.Empty())
    return wev

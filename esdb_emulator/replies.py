"""The success and error replies of Append and BatchAppend, as the real server fills them."""

from __future__ import annotations

from typing import Any

from esdbclient.protos.Grpc import shared_pb2, status_pb2, streams_pb2
from google.protobuf import any_pb2, empty_pb2

from esdb_emulator.decisions import ANY, NO_STREAM, STREAM_EXISTS
from esdb_emulator.errors import WrongExpectedVersion

_U64 = (1 << 64) - 1


def fill_success(success: Any, revision: int | None, position: int | None) -> None:
    if revision is None:
        success.no_stream.SetInParent()
    else:
        success.current_revision = revision
    if position is None:
        success.no_position.SetInParent()
    else:
        success.position.commit_position = position
        success.position.prepare_position = position


def append_wev(exc: WrongExpectedVersion) -> Any:
    wev = streams_pb2.AppendResp.WrongExpectedVersion()
    if exc.current < 0:
        wev.current_no_stream.SetInParent()
        wev.no_stream_20_6_0.SetInParent()
    else:
        wev.current_revision = exc.current
        wev.current_revision_20_6_0 = exc.current
    if exc.expected >= 0:
        wev.expected_revision = exc.expected
        wev.expected_revision_20_6_0 = exc.expected
    elif exc.expected == ANY:
        wev.expected_any.SetInParent()
        wev.any_20_6_0.SetInParent()
    elif exc.expected == STREAM_EXISTS:
        wev.expected_stream_exists.SetInParent()
        wev.stream_exists_20_6_0.SetInParent()
    else:
        wev.expected_no_stream.SetInParent()
        wev.expected_revision_20_6_0 = _U64
    return wev


def shared_wev(exc: WrongExpectedVersion) -> Any:
    wev = shared_pb2.WrongExpectedVersion()
    if exc.current < 0:
        wev.current_no_stream.CopyFrom(empty_pb2.Empty())
    else:
        wev.current_stream_revision = exc.current
    if exc.expected >= 0:
        wev.expected_stream_position = exc.expected
    elif exc.expected == ANY:
        wev.expected_any.CopyFrom(empty_pb2.Empty())
    elif exc.expected == STREAM_EXISTS:
        wev.expected_stream_exists.CopyFrom(empty_pb2.Empty())
    elif exc.expected == NO_STREAM:
        wev.expected_no_stream.CopyFrom(empty_pb2.Empty())
    return wev


def batch_error(request: Any, message: str, detail: Any, code: Any) -> Any:
    # `code` is a google.rpc.Code number, typed as its protobuf enum by the stubs.
    details = any_pb2.Any()
    details.Pack(detail)
    response = streams_pb2.BatchAppendResp(
        correlation_id=request.correlation_id,
        error=status_pb2.Status(code=code, message=message, details=details),
    )
    if request.HasField("options"):
        response.stream_identifier.stream_name = request.options.stream_identifier.stream_name
    return response

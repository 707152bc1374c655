"""The Streams service: Append, BatchAppend, Read (reads and catch-up subscriptions), Delete,
Tombstone. Each method translates protobuf to store calls and store errors to the real server's
statuses, detail texts and trailers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
from esdbclient.protos.Grpc import shared_pb2, streams_pb2

from esdb_emulator import replies, wire
from esdb_emulator.errors import (
    BadRequest,
    MaximumAppendSizeExceeded,
    StreamDeleted,
    WrongExpectedVersion,
)
from esdb_emulator.model import StreamNotFound
from esdb_emulator.records import MAX_REVISION
from esdb_emulator.store import Store
from esdb_emulator.subscriptions import subscribe_to_all, subscribe_to_stream

log = logging.getLogger(__name__)

SERVICE = "event_store.client.streams.Streams"
READ_CHUNK = 1024
_U64 = (1 << 64) - 1


class StreamsServicer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def handler(self) -> grpc.GenericRpcHandler:
        s = streams_pb2
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                # Read sends pre-serialized ReadResp bytes: no response serializer.
                "Read": grpc.unary_stream_rpc_method_handler(
                    self.Read, request_deserializer=s.ReadReq.FromString
                ),
                "Append": grpc.stream_unary_rpc_method_handler(
                    self.Append, s.AppendReq.FromString, s.AppendResp.SerializeToString
                ),
                "BatchAppend": grpc.stream_stream_rpc_method_handler(
                    self.BatchAppend,
                    s.BatchAppendReq.FromString,
                    s.BatchAppendResp.SerializeToString,
                ),
                "Delete": grpc.unary_unary_rpc_method_handler(
                    self.Delete, s.DeleteReq.FromString, s.DeleteResp.SerializeToString
                ),
                "Tombstone": grpc.unary_unary_rpc_method_handler(
                    self.Tombstone, s.TombstoneReq.FromString, s.TombstoneResp.SerializeToString
                ),
            },
        )

    # -- Append ---------------------------------------------------------------------------------

    def Append(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC method name)
        first = next(requests, None)
        if first is None or first.WhichOneof("content") != "options":
            wire.abort(
                context,
                grpc.StatusCode.UNKNOWN,
                "The first message of an append must carry its options.",
                {},
            )
        options = first.options
        stream = options.stream_identifier.stream_name.decode()
        try:
            expected = wire.expected_from(options, "revision")
            events = [wire.proposed_from(r.proposed_message) for r in requests]
            result = self.store.append(stream, expected, events)
        except WrongExpectedVersion as exc:
            return streams_pb2.AppendResp(wrong_expected_version=replies.append_wev(exc))
        except StreamDeleted as exc:
            wire.abort_deleted(context, exc)
        except MaximumAppendSizeExceeded as exc:
            wire.abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                str(exc),
                {
                    "exception": "maximum-append-size-exceeded",
                    "maximum-append-size": str(exc.limit),
                },
            )
        except wire.MissingMetadata as exc:
            wire.abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                str(exc),
                {
                    "exception": "missing-required-metadata-property",
                    "required-metadata-properties": "type,content-type",
                },
            )
        except BadRequest as exc:
            wire.abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), {"exception": "bad-request"}
            )
        success = streams_pb2.AppendResp.Success()
        replies.fill_success(success, result.revision, result.position)
        return streams_pb2.AppendResp(success=success)

    # -- BatchAppend ----------------------------------------------------------------------------

    def BatchAppend(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802 (gRPC method name)
        pending: dict[str, tuple[Any, list[Any]]] = {}
        for request in requests:
            key = request.correlation_id.SerializeToString()
            if request.HasField("options"):
                pending[key] = (request, list(request.proposed_messages))
            elif key in pending:
                pending[key][1].extend(request.proposed_messages)
            else:
                yield replies.batch_error(
                    request,
                    "BadRequest",
                    shared_pb2.BadRequest(
                        message="the first chunk of a batch must carry its options"
                    ),
                    3,
                )
                continue
            if request.is_final:
                first, messages = pending.pop(key)
                yield self._batch(first, messages, request)

    def _batch(self, first: Any, messages: list[Any], last: Any) -> Any:
        options = first.options
        stream = options.stream_identifier.stream_name.decode()
        identifier = shared_pb2.StreamIdentifier(stream_name=options.stream_identifier.stream_name)
        deadline = options.deadline if options.WhichOneof("deadline_option") == "deadline" else None
        if deadline is not None and deadline.seconds <= 0 and deadline.nanos <= 0:
            return replies.batch_error(first, "Timeout", shared_pb2.Timeout(), 4)
        try:
            expected = wire.expected_from(options, "stream_position")
            result = self.store.append(stream, expected, [wire.proposed_from(m) for m in messages])
        except WrongExpectedVersion as exc:
            return replies.batch_error(first, "WrongExpectedVersion", replies.shared_wev(exc), 6)
        except StreamDeleted:
            return replies.batch_error(
                first, "StreamDeleted", shared_pb2.StreamDeleted(stream_identifier=identifier), 5
            )
        except MaximumAppendSizeExceeded as exc:
            return replies.batch_error(
                first,
                "MaximumAppendSizeExceeded",
                shared_pb2.MaximumAppendSizeExceeded(maxAppendSize=exc.limit),
                3,
            )
        except BadRequest as exc:
            return replies.batch_error(
                first, "BadRequest", shared_pb2.BadRequest(message=str(exc)), 3
            )
        success = streams_pb2.BatchAppendResp.Success()
        if result.revision is None:
            success.no_stream.SetInParent()
        else:
            success.current_revision = result.revision
        if result.position is None:
            success.no_position.SetInParent()
        else:
            success.position.commit_position = result.position
            success.position.prepare_position = result.position
        return streams_pb2.BatchAppendResp(
            correlation_id=first.correlation_id, stream_identifier=identifier, success=success
        )

    # -- Delete and Tombstone -------------------------------------------------------------------

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC method name)
        position = self._delete(request, context, self.store.delete)
        return streams_pb2.DeleteResp(
            position=streams_pb2.DeleteResp.Position(
                commit_position=position, prepare_position=position
            )
        )

    def Tombstone(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC method name)
        position = self._delete(request, context, self.store.tombstone)
        return streams_pb2.TombstoneResp(
            position=streams_pb2.TombstoneResp.Position(
                commit_position=position, prepare_position=position
            )
        )

    def _delete(self, request: Any, context: grpc.ServicerContext, operation: Any) -> int:
        options = request.options
        stream = options.stream_identifier.stream_name.decode()
        try:
            position: int = operation(stream, wire.expected_from(options, "revision"))
        except WrongExpectedVersion as exc:
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Delete failed due to WrongExpectedVersion. Stream: {stream}, "
                f"Expected version: {exc.expected}, Actual version: {exc.current}",
                {
                    "exception": "wrong-expected-version",
                    "stream-name": stream,
                    "expected-version": str(exc.expected),
                    "actual-version": str(exc.current),
                },
            )
        except StreamDeleted as exc:
            wire.abort_deleted(context, exc)
        except BadRequest as exc:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), {})
        return position

    # -- Read -----------------------------------------------------------------------------------

    def Read(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802 (gRPC method name)
        options = request.options
        as_string = options.uuid_option.WhichOneof("content") == "string"
        target = options.WhichOneof("stream_option")
        counted = options.WhichOneof("count_option") == "count"
        backwards = options.read_direction == streams_pb2.ReadReq.Options.Backwards
        filtered = options.WhichOneof("filter_option") == "filter"
        try:
            if target == "stream" and counted and not filtered:
                yield from self._read_stream(options, backwards, as_string, context)
            elif target == "all" and counted:
                yield from self._read_all(options, backwards, as_string)
            elif target == "stream" and not counted and not backwards and not filtered:
                yield from subscribe_to_stream(self.store, options, as_string, context)
            elif target == "all" and not counted and not backwards:
                yield from subscribe_to_all(self.store, options, as_string, context)
            else:
                wire.abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"The combination of ({target}, {options.WhichOneof('count_option')}, "
                    f"{'Backwards' if backwards else 'Forwards'}, "
                    f"{options.WhichOneof('filter_option')}) is invalid.",
                    {},
                )
        except StreamDeleted as exc:
            wire.abort_deleted(context, exc)
        except BadRequest as exc:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), {})

    def _read_stream(
        self, options: Any, backwards: bool, as_string: bool, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        stream_options = options.stream
        name = stream_options.stream_identifier.stream_name.decode()
        kind = stream_options.WhichOneof("revision_option")
        revision = stream_options.revision if kind == "revision" else None
        try:
            records = self.store.read_stream(name, revision, backwards, options.count)
        except StreamNotFound:
            yield streams_pb2.ReadResp(
                stream_not_found=streams_pb2.ReadResp.StreamNotFound(
                    stream_identifier=stream_options.stream_identifier
                )
            ).SerializeToString()
            return
        for record in records:
            yield wire.event_response(record, as_string)

    def _read_all(self, options: Any, backwards: bool, as_string: bool) -> Iterator[bytes]:
        kind = options.all.WhichOneof("all_option")
        matches = wire.compile_filter(options)
        remaining = options.count
        store = self.store
        if backwards:
            index = (
                store.index_of_position(options.all.position.commit_position)
                if kind == "position"
                else store.head
            )
            while remaining > 0 and index > 0:
                start = max(0, index - READ_CHUNK)
                for record in reversed(store.all_slice(start, index - start)):
                    if store.visible_in_all(record) and (matches is None or matches(record)):
                        yield wire.event_response(record, as_string)
                        remaining -= 1
                        if remaining == 0:
                            return
                index = start
            return
        index = (
            store.index_of_position(options.all.position.commit_position)
            if kind == "position"
            else (store.head if kind == "end" else 0)
        )
        while remaining > 0:
            chunk = store.all_slice(index, READ_CHUNK)
            if not chunk:
                return
            index += len(chunk)
            for record in chunk:
                if store.visible_in_all(record) and (matches is None or matches(record)):
                    yield wire.event_response(record, as_string)
                    remaining -= 1
                    if remaining == 0:
                        return


__all__ = ["MAX_REVISION", "StreamsServicer", "uuid"]

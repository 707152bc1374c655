"""The Streams service: Append, BatchAppend, Read (reads and catch-up subscriptions), Delete,
Tombstone. Each method turns protobuf into store calls (`wire`) and the store's refusals into the
real server's answers (`statuses`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from esdbclient.protos.Grpc import streams_pb2

from esdb_emulator.model import (
    BadRequest,
    MaximumAppendSizeExceeded,
    Store,
    StreamDeleted,
    WrongExpectedVersion,
)
from esdb_emulator.rpc import statuses, wire
from esdb_emulator.rpc.reads import read_all, read_stream
from esdb_emulator.rpc.service import Service
from esdb_emulator.rpc.subscriptions import subscribe_to_all, subscribe_to_stream

NAME = "event_store.client.streams.Streams"


def streams_service(store: Store) -> Service:
    servicer = StreamsServicer(store)
    s = streams_pb2
    return Service(
        NAME,
        {
            # Read sends pre-serialized ReadResp bytes: no response serializer.
            "Read": grpc.unary_stream_rpc_method_handler(
                servicer.Read, request_deserializer=s.ReadReq.FromString
            ),
            "Append": grpc.stream_unary_rpc_method_handler(
                servicer.Append, s.AppendReq.FromString, s.AppendResp.SerializeToString
            ),
            "Delete": grpc.unary_unary_rpc_method_handler(
                servicer.Delete, s.DeleteReq.FromString, s.DeleteResp.SerializeToString
            ),
            "Tombstone": grpc.unary_unary_rpc_method_handler(
                servicer.Tombstone, s.TombstoneReq.FromString, s.TombstoneResp.SerializeToString
            ),
            "BatchAppend": grpc.stream_stream_rpc_method_handler(
                servicer.BatchAppend,
                s.BatchAppendReq.FromString,
                s.BatchAppendResp.SerializeToString,
            ),
        },
    )


class StreamsServicer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def Append(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC method name)
        first = next(requests, None)
        if first is None or first.WhichOneof("content") != "options":
            statuses.abort(context, statuses.append_without_options())
        options = first.options
        stream = options.stream_identifier.stream_name.decode()
        try:
            expected = wire.expected_from(options, "revision")
            events = [wire.proposed_from(r.proposed_message) for r in requests]
            result = self.store.append(stream, expected, events)
        except WrongExpectedVersion as exc:
            wev = statuses.append_wrong_expected_version(exc)
            return streams_pb2.AppendResp(wrong_expected_version=wev)
        except (StreamDeleted, MaximumAppendSizeExceeded, BadRequest) as exc:
            statuses.abort(context, statuses.append_refused(exc))
        success = streams_pb2.AppendResp.Success()
        wire.fill_success(success, result.revision, result.position)
        return streams_pb2.AppendResp(success=success)

    def BatchAppend(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802 (gRPC method name)
        pending: dict[bytes, tuple[Any, list[Any]]] = {}
        for request in requests:
            key = request.correlation_id.SerializeToString()
            if request.HasField("options"):
                pending[key] = (request, list(request.proposed_messages))
            elif key in pending:
                pending[key][1].extend(request.proposed_messages)
            else:
                yield statuses.batch_without_options(request)
                continue
            if request.is_final:
                first, messages = pending.pop(key)
                yield self._batch(first, messages)

    def _batch(self, first: Any, messages: list[Any]) -> Any:
        options = first.options
        stream = options.stream_identifier.stream_name.decode()
        deadline = options.deadline if options.WhichOneof("deadline_option") == "deadline" else None
        if deadline is not None and deadline.seconds <= 0 and deadline.nanos <= 0:
            return statuses.batch_timed_out(first)
        try:
            expected = wire.expected_from(options, "stream_position")
            result = self.store.append(stream, expected, [wire.proposed_from(m) for m in messages])
        except (WrongExpectedVersion, StreamDeleted, MaximumAppendSizeExceeded, BadRequest) as exc:
            return statuses.batch_refused(first, exc)
        success = streams_pb2.BatchAppendResp.Success()
        wire.fill_success(success, result.revision, result.position)
        response = streams_pb2.BatchAppendResp(correlation_id=first.correlation_id, success=success)
        response.stream_identifier.stream_name = options.stream_identifier.stream_name
        return response

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

    def _delete(
        self, request: Any, context: grpc.ServicerContext, operation: Callable[[str, int], int]
    ) -> int:
        options = request.options
        stream = options.stream_identifier.stream_name.decode()
        try:
            return operation(stream, wire.expected_from(options, "revision"))
        except (WrongExpectedVersion, StreamDeleted, BadRequest) as exc:
            statuses.abort(context, statuses.delete_refused(stream, exc))

    def Read(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802 (gRPC method name)
        options = request.options
        as_string = options.uuid_option.WhichOneof("content") == "string"
        target = options.WhichOneof("stream_option")
        counted = options.WhichOneof("count_option") == "count"
        backwards = options.read_direction == streams_pb2.ReadReq.Options.Backwards
        filtered = options.WhichOneof("filter_option") == "filter"
        try:
            if target == "stream" and counted and not filtered:
                yield from read_stream(self.store, options, backwards, as_string)
            elif target == "all" and counted:
                yield from read_all(self.store, options, backwards, as_string)
            elif target == "stream" and not counted and not backwards and not filtered:
                yield from subscribe_to_stream(self.store, options, as_string, context)
            elif target == "all" and not counted and not backwards:
                yield from subscribe_to_all(self.store, options, as_string, context)
            else:
                refusal = statuses.invalid_read_combination(
                    target,
                    options.WhichOneof("count_option"),
                    backwards,
                    options.WhichOneof("filter_option"),
                )
                statuses.abort(context, refusal)
        except (StreamDeleted, BadRequest) as exc:
            statuses.abort(context, statuses.read_refused(exc))

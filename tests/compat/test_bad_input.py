"""Malformed requests get an error status and never crash the emulator or damage its data.

These probe the protocol below esdbclient (raw gRPC with esdbclient's generated messages), so
they run only against the emulator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from esdbclient import EventStoreDBClient, StreamState
from esdbclient.protos.Grpc import shared_pb2, streams_pb2

from esdb_emulator import EmbeddedServer
from tests.fixtures.esdb_events import events

pytestmark = pytest.mark.emulator

APPEND = "/event_store.client.streams.Streams/Append"
READ = "/event_store.client.streams.Streams/Read"


@pytest.fixture
def channel(own_emulator: EmbeddedServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{own_emulator.port}") as channel:
        yield channel


def options(stream: str) -> streams_pb2.AppendReq:
    return streams_pb2.AppendReq(
        options=streams_pb2.AppendReq.Options(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode()),
            any=shared_pb2.Empty(),
        )
    )


def proposed(metadata: dict[str, str]) -> streams_pb2.AppendReq:
    return streams_pb2.AppendReq(
        proposed_message=streams_pb2.AppendReq.ProposedMessage(
            id=shared_pb2.UUID(string=str(uuid.uuid4())), metadata=metadata, data=b"{}"
        )
    )


def append(channel: grpc.Channel, requests: list[bytes]) -> grpc.RpcError:
    call = channel.stream_unary(APPEND)
    with pytest.raises(grpc.RpcError) as caught:
        call(iter(requests), timeout=5)
    return caught.value


def test_malformed_appends_are_refused_and_the_data_stays_intact(
    own_emulator: EmbeddedServer, channel: grpc.Channel, stream: str
) -> None:
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(2))
        garbage = append(channel, [b"\xff\xfe not a protobuf"])
        assert garbage.code() is grpc.StatusCode.INTERNAL
        no_options = append(channel, [proposed({"type": "t"}).SerializeToString()])
        assert no_options.code() is grpc.StatusCode.UNKNOWN
        no_type = append(
            channel,
            [
                options(stream).SerializeToString(),
                proposed({"content-type": "application/json"}).SerializeToString(),
            ],
        )
        assert no_type.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert no_type.details() == "Required Metadata Property 'type' is missing"
        bad_id = streams_pb2.AppendReq(
            proposed_message=streams_pb2.AppendReq.ProposedMessage(
                id=shared_pb2.UUID(string="not-a-uuid"),
                metadata={"type": "t", "content-type": "application/json"},
            )
        )
        refused = append(channel, [options(stream).SerializeToString(), bad_id.SerializeToString()])
        assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert [e.stream_position for e in client.get_stream(stream)] == [0, 1]
        assert client.append_to_stream(stream, current_version=1, events=events(1)) > 0
    finally:
        client.close()


def test_an_invalid_filter_regex_is_an_invalid_argument(
    own_emulator: EmbeddedServer, channel: grpc.Channel
) -> None:
    request = streams_pb2.ReadReq(
        options=streams_pb2.ReadReq.Options(
            all=streams_pb2.ReadReq.Options.AllOptions(start=shared_pb2.Empty()),
            read_direction=streams_pb2.ReadReq.Options.Forwards,
            count=10,
            filter=streams_pb2.ReadReq.Options.FilterOptions(
                event_type=streams_pb2.ReadReq.Options.FilterOptions.Expression(regex="(unclosed"),
                count=shared_pb2.Empty(),
            ),
            uuid_option=streams_pb2.ReadReq.Options.UUIDOption(string=shared_pb2.Empty()),
        )
    )
    call = channel.unary_stream(
        READ,
        request_serializer=streams_pb2.ReadReq.SerializeToString,
        response_deserializer=streams_pb2.ReadResp.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(call(request, timeout=5))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_requests_missing_their_options_are_refused_and_unknown_methods_unimplemented(
    own_emulator: EmbeddedServer, channel: grpc.Channel, stream: str
) -> None:
    read = channel.unary_stream(READ, request_serializer=streams_pb2.ReadReq.SerializeToString)
    with pytest.raises(grpc.RpcError) as no_stream_option:
        list(read(streams_pb2.ReadReq(), timeout=5))
    assert no_stream_option.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    delete = channel.unary_unary(
        "/event_store.client.streams.Streams/Delete",
        request_serializer=streams_pb2.DeleteReq.SerializeToString,
    )
    with pytest.raises(grpc.RpcError) as no_expected_revision:
        delete(
            streams_pb2.DeleteReq(
                options=streams_pb2.DeleteReq.Options(
                    stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode())
                )
            ),
            timeout=5,
        )
    assert no_expected_revision.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    batch = channel.stream_stream(
        "/event_store.client.streams.Streams/BatchAppend",
        request_serializer=streams_pb2.BatchAppendReq.SerializeToString,
        response_deserializer=streams_pb2.BatchAppendResp.FromString,
    )
    orphan = streams_pb2.BatchAppendReq(
        correlation_id=shared_pb2.UUID(string=str(uuid.uuid4())), is_final=True
    )
    (reply,) = list(batch(iter([orphan]), timeout=5))
    assert reply.WhichOneof("result") == "error"
    unknown = channel.unary_unary("/event_store.client.projections.Projections/Create")
    with pytest.raises(grpc.RpcError) as unimplemented:
        unknown(b"", timeout=5)
    assert unimplemented.value.code() is grpc.StatusCode.UNIMPLEMENTED
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(1))
        assert [e.stream_position for e in client.get_stream(stream)] == [0]
    finally:
        client.close()

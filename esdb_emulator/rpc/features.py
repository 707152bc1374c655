"""ServerFeatures.GetSupportedMethods: which methods this server implements, and its version.

Clients other than esdbclient (the Node, .NET, Java and Rust clients) ask this first and pick
their code paths from it (BatchAppend for appends, for one). The real server lists every method
of every `client` service it hosts, names lower-cased, with the features its rules attach; the
emulator lists exactly the methods it registers, by the same rules, with a 24.10 version.

esdbclient ships no `serverfeatures_pb2`, so the two reply messages are built here from their
`.proto` definition (`event_store.client.server_features`) in a private descriptor pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import grpc
from esdbclient.protos.Grpc import shared_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from esdb_emulator.rpc.service import Service

NAME = "event_store.client.server_features.ServerFeatures"
METHOD = "GetSupportedMethods"
# What a 24.10.0 server says: the first three parts of its version.
SERVER_VERSION = "24.10.0"
_PACKAGE = "event_store.client.server_features"


def features_of(service: str, method: str) -> list[str]:
    """The features the real server attaches to a method (its rules, in its order)."""
    if "PersistentSubscriptions" in service:
        return ["stream", "all"]
    if "Streams" in service and "Read" in method:
        return ["position", "events"]
    if "Streams" in service and "BatchAppend" in method:
        return ["deadline_duration"]
    if "Projections" in service and "Create" in method:
        return ["track_emitted_streams"]
    return []


def supported_methods(methods: Iterable[tuple[str, str]], version: str) -> Any:
    """The SupportedMethods reply for (service, method) pairs, as the real server fills it."""
    supported_methods_class, supported_method_class = message_classes()
    reply = supported_methods_class(event_store_server_version=version)
    for service, method in methods:
        if "client" not in service:
            continue
        reply.methods.append(
            supported_method_class(
                method_name=method.lower(),
                service_name=service.lower(),
                features=features_of(service, method),
            )
        )
    return reply


def server_features_service(served: Sequence[Service], version: str = SERVER_VERSION) -> Service:
    """ServerFeatures answering for `served` and for itself."""
    listed = [(service.name, method) for service in served for method in service.methods]
    reply: bytes = supported_methods([*listed, (NAME, METHOD)], version).SerializeToString()

    def get_supported_methods(request: Any, context: grpc.ServicerContext) -> bytes:
        return reply

    return Service(
        NAME,
        {
            # The reply is serialized once: no response serializer.
            METHOD: grpc.unary_unary_rpc_method_handler(
                get_supported_methods, request_deserializer=shared_pb2.Empty.FromString
            )
        },
    )


@cache
def message_classes() -> tuple[Any, Any]:
    """The classes of SupportedMethods and SupportedMethod (fields and numbers of the .proto)."""
    string, message = (
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        (descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE),
    )
    optional, repeated = (
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    file = descriptor_pb2.FileDescriptorProto(
        name="esdb_emulator/serverfeatures.proto", package=_PACKAGE, syntax="proto3"
    )
    method = file.message_type.add(name="SupportedMethod")
    method.field.add(name="method_name", number=1, type=string, label=optional)
    method.field.add(name="service_name", number=2, type=string, label=optional)
    method.field.add(name="features", number=3, type=string, label=repeated)
    methods = file.message_type.add(name="SupportedMethods")
    methods.field.add(
        name="methods",
        number=1,
        type=message,
        label=repeated,
        type_name=f".{_PACKAGE}.SupportedMethod",
    )
    methods.field.add(name="event_store_server_version", number=2, type=string, label=optional)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.SupportedMethods")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.SupportedMethod")),
    )

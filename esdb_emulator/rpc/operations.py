"""Operations.StartScavenge and Operations.StopScavenge, answered as the real server answers them:
StartScavenge replies at once, `Started` with a new scavenge id (the scavenge runs in the
background, see `model/scavenger.py`) or `InProgress` with the running one's id; StopScavenge
replies `Stopped`, or NOT_FOUND "Scavenge id was invalid." for an id that is not running. The
other Operations methods (shutdown, merge indexes, node priority...) are not served.

esdbclient ships no `operations_pb2`, so the three messages are built here from their `.proto`
definition (`event_store.client.operations`) in a private descriptor pool.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from esdb_emulator.model.scavenger import Scavenger
from esdb_emulator.rpc import statuses
from esdb_emulator.rpc.service import Service

NAME = "event_store.client.operations.Operations"
_PACKAGE = "event_store.client.operations"
# ScavengeResp.ScavengeResult
STARTED, IN_PROGRESS, STOPPED = 0, 1, 2


def operations_service(scavenger: Scavenger) -> Service:
    start_request, stop_request, response = message_classes()

    def start_scavenge(request: Any, context: grpc.ServicerContext) -> Any:
        # The options (thread count, first chunk) mean nothing to a log without chunks.
        scavenge_id, started = scavenger.start()
        return response(
            scavenge_id=scavenge_id, scavenge_result=STARTED if started else IN_PROGRESS
        )

    def stop_scavenge(request: Any, context: grpc.ServicerContext) -> Any:
        scavenge_id = request.options.scavenge_id
        if not scavenger.stop(scavenge_id):
            statuses.abort(context, statuses.scavenge_not_found(scavenger.current))
        return response(scavenge_id=scavenge_id, scavenge_result=STOPPED)

    return Service(
        NAME,
        {
            "StartScavenge": grpc.unary_unary_rpc_method_handler(
                start_scavenge, start_request.FromString, response.SerializeToString
            ),
            "StopScavenge": grpc.unary_unary_rpc_method_handler(
                stop_scavenge, stop_request.FromString, response.SerializeToString
            ),
        },
    )


@cache
def message_classes() -> tuple[Any, Any, Any]:
    """The classes of StartScavengeReq, StopScavengeReq and ScavengeResp (fields and numbers of
    the .proto)."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="esdb_emulator/operations.proto", package=_PACKAGE, syntax="proto3"
    )

    start = file.message_type.add(name="StartScavengeReq")
    start_options = start.nested_type.add(name="Options")
    start_options.field.add(
        name="thread_count", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL
    )
    start_options.field.add(
        name="start_from_chunk", number=2, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL
    )
    start.field.add(
        name="options",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=f".{_PACKAGE}.StartScavengeReq.Options",
    )

    stop = file.message_type.add(name="StopScavengeReq")
    stop_options = stop.nested_type.add(name="Options")
    stop_options.field.add(
        name="scavenge_id", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL
    )
    stop.field.add(
        name="options",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=f".{_PACKAGE}.StopScavengeReq.Options",
    )

    resp = file.message_type.add(name="ScavengeResp")
    result = resp.enum_type.add(name="ScavengeResult")
    for name, number in (("Started", STARTED), ("InProgress", IN_PROGRESS), ("Stopped", STOPPED)):
        result.value.add(name=name, number=number)
    resp.field.add(name="scavenge_id", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    resp.field.add(
        name="scavenge_result",
        number=2,
        type=field.TYPE_ENUM,
        label=field.LABEL_OPTIONAL,
        type_name=f".{_PACKAGE}.ScavengeResp.ScavengeResult",
    )

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("StartScavengeReq", "StopScavengeReq", "ScavengeResp")
    )

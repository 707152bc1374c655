"""Gossip (one leader member, so discovery works) and the one persistent-subscriptions call
clients make on their own (List, answered as an empty server does)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc
from esdbclient.protos.Grpc import gossip_pb2, persistent_pb2, shared_pb2

from esdb_emulator.rpc.service import Service
from esdb_emulator.rpc.wire import uuid_message

GOSSIP = "event_store.client.gossip.Gossip"
PERSISTENT_SUBSCRIPTIONS = "event_store.client.persistent_subscriptions.PersistentSubscriptions"


def gossip_service(advertised_host: str, port: int) -> Service:
    instance_id = uuid.uuid4()

    def read(request: Any, context: grpc.ServicerContext) -> Any:
        member = gossip_pb2.MemberInfo(
            instance_id=uuid_message(instance_id, as_string=False),
            time_stamp=time.time_ns() // 100,
            state=gossip_pb2.MemberInfo.Leader,
            is_alive=True,
            http_end_point=gossip_pb2.EndPoint(address=advertised_host, port=port),
        )
        return gossip_pb2.ClusterInfo(members=[member])

    return Service(
        GOSSIP,
        {
            "Read": grpc.unary_unary_rpc_method_handler(
                read, shared_pb2.Empty.FromString, gossip_pb2.ClusterInfo.SerializeToString
            )
        },
    )


def persistent_subscriptions_service() -> Service:
    """Only List, answered as a server with no persistent subscriptions answers."""

    def list_(request: Any, context: grpc.ServicerContext) -> Any:
        return persistent_pb2.ListResp()

    return Service(
        PERSISTENT_SUBSCRIPTIONS,
        {
            "List": grpc.unary_unary_rpc_method_handler(
                list_, persistent_pb2.ListReq.FromString, persistent_pb2.ListResp.SerializeToString
            )
        },
    )

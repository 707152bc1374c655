"""Gossip (one leader member, so discovery works) and the one persistent-subscriptions call
clients make on their own (List, answered as an empty server does)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc
from esdbclient.protos.Grpc import gossip_pb2, gossip_pb2_grpc, persistent_pb2, persistent_pb2_grpc

from esdb_emulator.wire import uuid_message


class GossipServicer(gossip_pb2_grpc.GossipServicer):
    def __init__(self, advertised_host: str, port: int) -> None:
        self.advertised_host = advertised_host
        self.port = port
        self.instance_id = uuid.uuid4()

    def Read(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC method name)
        member = gossip_pb2.MemberInfo(
            instance_id=uuid_message(self.instance_id, as_string=False),
            time_stamp=time.time_ns() // 100,
            state=gossip_pb2.MemberInfo.Leader,
            is_alive=True,
            http_end_point=gossip_pb2.EndPoint(address=self.advertised_host, port=self.port),
        )
        return gossip_pb2.ClusterInfo(members=[member])


class PersistentSubscriptionsServicer(persistent_pb2_grpc.PersistentSubscriptionsServicer):
    """Every method but List answers UNIMPLEMENTED (the base class does that)."""

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC method name)
        return persistent_pb2.ListResp()

"""A gRPC service as the emulator serves it: its full name and the handlers of the methods it
implements. The server registers exactly these, and ServerFeatures lists exactly these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class Service:
    name: str  # the full name, e.g. "event_store.client.streams.Streams"
    methods: Mapping[str, grpc.RpcMethodHandler]

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(self.name, dict(self.methods))

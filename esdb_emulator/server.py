"""The gRPC server and `EmbeddedServer`, the emulator as a context manager for tests and tools."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import grpc

from esdb_emulator.model import Store
from esdb_emulator.model.scavenger import Scavenger
from esdb_emulator.rpc.cluster import gossip_service, persistent_subscriptions_service
from esdb_emulator.rpc.features import server_features_service
from esdb_emulator.rpc.operations import operations_service
from esdb_emulator.rpc.service import Service
from esdb_emulator.rpc.streams import streams_service

log = logging.getLogger(__name__)

MAX_MESSAGE = 17 * 1024 * 1024
# Every open Read (subscriptions included) holds a thread; many clients at once need many.
MAX_WORKERS = 256
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.so_reuseport", 0),
]


def build_services(store: Store, advertised_host: str, port: int) -> list[Service]:
    """Every service the emulator serves; ServerFeatures lists the methods of all of them."""
    served = [
        streams_service(store),
        gossip_service(advertised_host, port),
        persistent_subscriptions_service(),
        operations_service(Scavenger(store, f"{advertised_host}:{port}")),
    ]
    return [*served, server_features_service(served)]


def build_server(
    store: Store,
    host: str,
    port: int,
    advertised_host: str | None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=MAX_WORKERS), options=OPTIONS, interceptors=interceptors
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    services = build_services(store, advertised_host or host, bound)
    server.add_generic_rpc_handlers(tuple(service.handler() for service in services))
    return server, bound


class EmbeddedServer:
    """The emulator in this process. `data_dir=None` keeps everything in memory.

    `stop()` then `start()` reopens the same data directory on the same port, which is how tests
    make EventStoreDB go away and come back. `interceptors` see every call (tests count them).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        advertised_host: str | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.host = host
        self._port = port
        self.advertised_host = advertised_host
        self.interceptors = tuple(interceptors)
        self._server: grpc.Server | None = None
        self.store: Store | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def connection_string(self) -> str:
        return f"esdb://{self.host}:{self._port}?tls=false"

    def open_store(self) -> Store:
        """The store this server serves, opened now if it is not (e.g. to import before
        serving, so that no client can write in between)."""
        if self.store is None:
            self.store = Store(self.data_dir)
        return self.store

    def start(self) -> EmbeddedServer:
        if self._server is not None:
            return self
        store = self.open_store()
        self._server, self._port = build_server(
            store, self.host, self._port, self.advertised_host, self.interceptors
        )
        self._server.start()
        log.info("EventStoreDB emulator listening on %s:%d", self.host, self._port)
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving; an on-disk store is closed (an in-memory one is kept for `start`)."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self.data_dir is not None and self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

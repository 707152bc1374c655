"""A bound on the EventStoreDB calls one service process has in flight.

Each call of a request (read, append, truncate) takes a slot for its duration. When every slot
is taken, a request waits at most `wait` seconds for one, then answers `503 event_store_busy`
without sending anything. So a hung EventStoreDB holds at most `slots` of the process's threads
(each until its gRPC deadline, `ESDB_TIMEOUT`), and the others go on answering reads, which need
only PostgreSQL. The probes' head reads are not counted: they have a short deadline of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from esdbclient import NewEvent, RecordedEvent

from service.commands import StorePort
from service.errors import EventStoreBusy


class LimitedStore:
    """A `StorePort` whose calls share `slots` places, each waited for at most `wait` seconds."""

    def __init__(self, store: StorePort, slots: int, wait: float) -> None:
        self.store = store
        self.slots = slots
        self.wait = wait
        self._free = threading.BoundedSemaphore(slots)

    def read(self, stream: str) -> Sequence[RecordedEvent]:
        with self._slot():
            return self.store.read(stream)

    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None:
        with self._slot():
            return self.store.read_from(stream, revision)

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        with self._slot():
            return self.store.append(stream, expected, event)

    def truncate_before(self, stream: str, revision: int) -> bool:
        with self._slot():
            return self.store.truncate_before(stream, revision)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._free.acquire(timeout=self.wait):
            raise EventStoreBusy(
                f"all {self.slots} of this server's EventStoreDB calls are in flight and none "
                "ended in time; retry shortly"
            )
        try:
            yield
        finally:
            self._free.release()

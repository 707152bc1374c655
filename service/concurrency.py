"""A bound on the EventStoreDB calls one service process has in flight.

Each call of a request (read, append, truncate) takes one of `slots` places for its duration.
When every place is taken, a request waits for one: at most `wait` seconds while the calls in
flight move (a burst of writes against a working EventStoreDB queues briefly and goes through),
and not at all once every place has been held longer than `STALLED` seconds (EventStoreDB hangs:
waiting would only hold another thread). Then it answers `503 event_store_busy` without sending
anything. So a hung EventStoreDB holds at most `slots` of the process's threads (each until its
gRPC deadline, `ESDB_TIMEOUT`), and the others go on answering reads, which need only PostgreSQL.
The probes' head reads are not counted: they have a short deadline of their own.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from esdbclient import NewEvent, RecordedEvent

from service.commands import StorePort
from service.errors import EventStoreBusy

# Seconds after which a call still in flight counts as stalled: an append to a working server
# takes milliseconds, a few hundred under heavy load.
STALLED = 1.0
# Seconds between a waiting request's looks at the calls in flight.
STEP = 0.05


class LimitedStore:
    """A `StorePort` whose calls share `slots` places (see the module's docstring)."""

    def __init__(self, store: StorePort, slots: int, wait: float) -> None:
        self.store = store
        self.slots = slots
        self.wait = wait
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}  # call -> when it took its place
        self._ids = itertools.count()

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
        self._take()
        call = next(self._ids)
        with self._lock:
            self._started[call] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                del self._started[call]
            self._free.release()

    def _take(self) -> None:
        deadline = time.monotonic() + self.wait
        while not self._free.acquire(timeout=min(STEP, max(0.0, deadline - time.monotonic()))):
            if self._stalled() or time.monotonic() >= deadline:
                raise EventStoreBusy(
                    f"all {self.slots} of this server's EventStoreDB calls are in flight and "
                    "none ended in time; retry shortly"
                )

    def _stalled(self) -> bool:
        """Whether every place is held by a call that has run longer than `STALLED`."""
        now = time.monotonic()
        with self._lock:
            return len(self._started) >= self.slots and all(
                now - started > STALLED for started in self._started.values()
            )

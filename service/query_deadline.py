"""A client-side deadline for PostgreSQL queries: a server that hangs cannot hang a request.

`statement_timeout` (sent with every connection of the pool) lets a slow but working server cancel
a query itself. A server that does not run at all (stopped, frozen, a network path that drops
packets while the kernel still acknowledges them) cannot: the request thread would wait in
`recv()` for as long as the server is gone. So each query runs under a `QueryDeadline`: one
thread per process looks at the queries in flight a few times a second and shuts down the socket
of any that is past its deadline. The blocked read then fails at once, psycopg raises
`OperationalError`, and the connection, broken, is closed and never goes back to the pool.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

log = logging.getLogger(__name__)

# Seconds between the watchdog's looks: a query is cut at most this long after its deadline.
TICK = 0.1


class QueryDeadline:
    """Cuts the connection of a query that runs longer than `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[float, int]] = {}  # id -> (deadline, socket fd)
        self._cut: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Run the block's queries on `conn` within the deadline. A connection cut meanwhile is
        closed on the way out (the pool then drops it), and its error propagates."""
        self._start()
        entry = next(self._ids)
        with self._lock:
            self._watched[entry] = (time.monotonic() + self.seconds, conn.fileno())
        try:
            yield
        finally:
            with self._lock:
                del self._watched[entry]
                was_cut = entry in self._cut
                self._cut.discard(entry)
            if was_cut:
                conn.close()
        if was_cut:
            # The block ended before it noticed the cut: its connection is gone all the same.
            raise psycopg.OperationalError("the query ran past its deadline")

    def close(self) -> None:
        self._closed.set()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="query-deadline", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        while not self._closed.wait(TICK):
            now = time.monotonic()
            with self._lock:
                for entry, (deadline, fd) in self._watched.items():
                    if deadline <= now and entry not in self._cut:
                        self._cut.add(entry)
                        _shut_down(fd)


def _shut_down(fd: int) -> None:
    """Shut the socket down for both directions, through a duplicate of its descriptor: the
    owner's blocked read returns at once, and its descriptor stays its own to close."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        log.warning("cut a PostgreSQL connection whose query ran past its deadline")
    except OSError as exc:
        log.warning("could not cut a PostgreSQL connection past its deadline: %s", exc)

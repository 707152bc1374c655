"""The service's bounds on what a dependency that hangs can take: a PostgreSQL query past its
deadline is cut off (`QueryDeadline`), and EventStoreDB calls beyond the process's slots wait a
bounded time, then answer 503 without sending anything (`LimitedStore`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from esdbclient import NewEvent

from service.concurrency import STALLED, LimitedStore
from service.errors import EventStoreBusy
from service.query_deadline import TICK, QueryDeadline
from service.users import pool_settings
from tests.fixtures.service_fakes import MemoryStore

NEW = NewEvent(type="user-created", data=b"{}", metadata=b"{}", content_type="application/json")


class SocketConnection:
    """What `QueryDeadline` needs of a psycopg connection: its socket, and `close`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def deadline() -> Iterator[QueryDeadline]:
    watchdog = QueryDeadline(0.3)
    yield watchdog
    watchdog.close()


def test_a_read_from_a_server_that_never_answers_is_cut_at_the_deadline(
    deadline: QueryDeadline,
) -> None:
    ours, server = socket.socketpair()
    with ours, server:
        conn = SocketConnection(ours)
        received: list[bytes] = []
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError), deadline.guard(conn):  # type: ignore[arg-type]
            received.append(ours.recv(1))  # the server is silent: only the cut ends this
        elapsed = time.monotonic() - started
        assert received == [b""]
        assert 0.3 <= elapsed < 0.3 + TICK + 1.0, f"cut after {elapsed:.2f} s"
        assert conn.closed


def test_a_query_that_ends_in_time_is_left_alone(deadline: QueryDeadline) -> None:
    ours, server = socket.socketpair()
    with ours, server:
        conn = SocketConnection(ours)
        server.sendall(b"x")
        with deadline.guard(conn):  # type: ignore[arg-type]
            assert ours.recv(1) == b"x"
        time.sleep(0.3 + 2 * TICK)  # past the deadline the block had: nothing is cut now
        server.sendall(b"y")
        assert ours.recv(1) == b"y"
        assert not conn.closed


def test_a_block_that_ended_after_its_cut_fails_as_an_operational_error(
    deadline: QueryDeadline,
) -> None:
    ours, server = socket.socketpair()
    with ours, server:
        conn = SocketConnection(ours)
        with pytest.raises(psycopg.OperationalError), deadline.guard(conn):  # type: ignore[arg-type]
            time.sleep(0.3 + 3 * TICK)  # busy, not reading: the cut happens under it
        assert conn.closed


def test_the_pool_sends_statement_timeout_with_the_urls_own_options() -> None:
    kwargs = pool_settings(
        "postgresql://u@h/db?options=-c%20search_path%3Dx",
        connect_timeout=3,
        statement_timeout=1.5,
    )
    assert kwargs == {
        "autocommit": True,
        "connect_timeout": 3,
        "options": "-c search_path=x -c statement_timeout=1500",
    }


class SlowStore(MemoryStore):
    """Appends take `seconds` each, as against a working but loaded EventStoreDB."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        time.sleep(self.seconds)
        return super().append(stream, expected, event)


class HangingStore(MemoryStore):
    """Appends block until `release` is set, as against an EventStoreDB that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        self.entered.release()
        self.release.wait(10)
        return super().append(stream, expected, event)


def test_a_burst_beyond_the_slots_queues_and_goes_through_while_calls_move() -> None:
    store = LimitedStore(SlowStore(0.05), slots=1, wait=5.0)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(store.append(f"s-{n}", None, NEW)))
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 6


def test_once_every_slot_is_stalled_a_call_answers_busy_at_once() -> None:
    hanging = HangingStore()
    store = LimitedStore(hanging, slots=1, wait=30.0)
    stuck = threading.Thread(target=store.append, args=("s-0", None, NEW))
    stuck.start()
    try:
        assert hanging.entered.acquire(timeout=5)
        started = time.monotonic()
        with pytest.raises(EventStoreBusy):
            store.read("s-1")
        # It waited only until the call in flight had run `STALLED` seconds, not 30 s.
        assert time.monotonic() - started < STALLED + 2.0
        started = time.monotonic()
        with pytest.raises(EventStoreBusy):
            store.read("s-1")
        assert time.monotonic() - started < 0.5
    finally:
        hanging.release.set()
        stuck.join(10)


def test_calls_beyond_the_slots_wait_then_answer_busy_without_sending() -> None:
    hanging = HangingStore()
    store = LimitedStore(hanging, slots=2, wait=0.2)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(store.append(f"s-{n}", None, NEW)))
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert hanging.entered.acquire(timeout=5)
    started = time.monotonic()
    with pytest.raises(EventStoreBusy) as caught:
        store.read("s-3")
    assert 0.2 <= time.monotonic() - started < 2.0
    assert caught.value.status == 503
    assert caught.value.headers()["Retry-After"]
    assert hanging.reads == 0
    hanging.release.set()
    for thread in threads:
        thread.join(5)
    assert len(results) == 2
    assert store.read("s-0") != []

"""Write load that keeps going through faults, and the audit every fault test ends with.

Each writer thread registers users one after another. A request whose outcome it does not know
(a 503, a lost connection, a timeout) is sent again, identical and with the same
`Idempotency-Key`, until the answer is definite, as a careful client does; the answers are
counted. The audit then holds the system to its promise: every 201 is in EventStoreDB exactly
once and in PostgreSQL exactly once, no row exists without a 201, the checkpoint reaches the
head of `$all`, no answer was a 500.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
from esdbclient import EventStoreDBClient
from esdbclient.exceptions import NotFound
from psycopg import sql

from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.events import USER_CREATED, stream_name
from usersvc.readmodel import ReadModel

# Seconds any one request may take; more is a hang.
REQUEST_BOUND = 15.0
# Seconds a writer keeps retrying one registration before it gives up (then the audit fails).
RETRY_BOUND = 60.0


@dataclass
class Tally:
    """What the clients saw, across all writers (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    hangs: int = 0  # requests that took longer than REQUEST_BOUND
    created: list[str] = field(default_factory=list)  # usernames answered 201
    given_up: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def saw(self, status: int | None, seconds: float) -> None:
        with self.lock:
            self.slowest = max(self.slowest, seconds)
            if seconds > REQUEST_BOUND:
                self.hangs += 1
            if status is None:
                self.transport_errors += 1
            else:
                self.statuses[status] += 1


class Writers:
    """`threads` writers registering `{prefix}-{thread}-{n}` until stopped."""

    def __init__(self, base_url: str, prefix: str, threads: int = 4) -> None:
        self.base_url = base_url
        self.prefix = prefix
        self.tally = Tally()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(RETRY_BOUND + REQUEST_BOUND)
            assert not thread.is_alive(), "a writer is stuck"
        return self.tally

    def wait_for_writes(self, count: int, timeout: float = 60) -> None:
        """Block until `count` more users were answered 201 (progress between faults)."""
        target = len(self.tally.created) + count
        deadline = time.monotonic() + timeout
        while len(self.tally.created) < target:
            assert time.monotonic() < deadline, f"fewer than {count} writes in {timeout} s"
            time.sleep(0.01)  # polls the writers' own counter, not the worker

    def _write(self, number: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_BOUND + 5) as http:
            n = 0
            while not self._stop.is_set():
                username = f"{self.prefix}-{number}-{n}"
                n += 1
                self._register(http, username)

    def _register(self, http: httpx.Client, username: str) -> None:
        body = {"username": username, "fullName": f"Writer {username}"}
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        deadline = time.monotonic() + RETRY_BOUND
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answer = http.post("/users", json=body, headers=headers)
            except httpx.TransportError:
                self.tally.saw(None, time.monotonic() - started)
                time.sleep(0.05)  # the client's own retry pause
                continue
            self.tally.saw(answer.status_code, time.monotonic() - started)
            if answer.status_code == 201:
                with self.tally.lock:
                    self.tally.created.append(username)
                return
            if answer.status_code != 503:
                return  # definite and not a success: counted, and the audit judges it
            time.sleep(min(float(answer.headers.get("Retry-After", "1")), 0.2))
        with self.tally.lock:
            self.tally.given_up.append(username)


@dataclass
class Audit:
    writes: int
    lost_in_esdb: list[str]
    duplicated_in_esdb: list[str]
    lost_in_pg: list[str]
    rows_without_201: list[str]
    server_errors: int  # 5xx other than 503
    answers_503: int
    transport_errors: int
    hangs: int
    given_up: list[str]

    def counts(self) -> str:
        return (
            f"writes={self.writes} lost={len(self.lost_in_esdb) + len(self.lost_in_pg)}"
            f" duplicated={len(self.duplicated_in_esdb)} phantom={len(self.rows_without_201)}"
            f" 5xx={self.server_errors} 503={self.answers_503}"
            f" transport_errors={self.transport_errors} hangs={self.hangs}"
            f" given_up={len(self.given_up)}"
        )

    def assert_clean(self) -> None:
        assert self.writes > 0, "no write succeeded: the test proved nothing"
        assert not self.lost_in_esdb, f"201 but not in EventStoreDB: {self.lost_in_esdb[:5]}"
        assert not self.duplicated_in_esdb, f"created twice: {self.duplicated_in_esdb[:5]}"
        assert not self.lost_in_pg, f"201 but not in PostgreSQL: {self.lost_in_pg[:5]}"
        assert not self.rows_without_201, f"rows without a 201: {self.rows_without_201[:5]}"
        assert self.server_errors == 0, f"{self.server_errors} answers were 5xx other than 503"
        assert self.hangs == 0, f"{self.hangs} requests took over {REQUEST_BOUND} s"
        assert not self.given_up, f"still unknown after {RETRY_BOUND} s: {self.given_up[:5]}"


def audit(tally: Tally, esdb_url: str, pg_url: str, schema: str, worker: str, prefix: str) -> Audit:
    client = EventStoreDBClient(esdb_url)
    try:
        head = client.get_commit_position()
        lost_in_esdb, duplicated = [], []
        for username in tally.created:
            try:
                events = client.get_stream(stream_name(username))
            except NotFound:
                lost_in_esdb.append(username)
                continue
            count = sum(1 for e in events if e.type == USER_CREATED)
            if count == 0:
                lost_in_esdb.append(username)
            elif count > 1:
                duplicated.append(username)
    finally:
        client.close()
    wait_for_checkpoint(pg_url, schema, worker, head, timeout=60)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT username FROM {} WHERE username LIKE %s").format(
                ReadModel(schema).users
            ),
            (prefix + "-%",),
        ).fetchall()
    in_pg = [row[0] for row in rows]
    created = set(tally.created)
    server_errors = sum(
        n for status, n in tally.statuses.items() if status >= 500 and status != 503
    )
    return Audit(
        writes=len(tally.created),
        lost_in_esdb=lost_in_esdb,
        duplicated_in_esdb=duplicated,
        lost_in_pg=sorted(created - set(in_pg)),
        rows_without_201=sorted(set(in_pg) - created),
        server_errors=server_errors,
        answers_503=tally.statuses[503],
        transport_errors=tally.transport_errors,
        hangs=tally.hangs,
        given_up=tally.given_up,
    )

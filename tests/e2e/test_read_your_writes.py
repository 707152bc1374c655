"""Read-your-writes across processes: a write through one service process, then a read with
`X-Min-Position` through another, while the worker is deliberately held back.

The worker is held back by a transaction of the test's own that locks the worker's checkpoint
row: the worker receives the event and writes it, but cannot commit until the test lets go, so
the read model is behind for exactly as long as the test decides. Nothing sleeps: the test learns
that the second service is waiting from that service's own (JSON) log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import psycopg
import pytest

from tests.fixtures.operations import HeldBack, Logged, scrape, value
from tests.fixtures.processes import free_port, stop_process, wait_for_http
from tests.fixtures.waiting import read_checkpoint, wait_for_checkpoint

pytestmark = pytest.mark.slow

# Service A gives up after this many seconds; service B waits the default (5 s).
SHORT_WAIT = 1.0


@dataclass
class Two:
    a: str
    b: str
    b_log: Logged
    pg_url: str
    schema: str
    worker_name: str


@pytest.fixture
def two_services(esdb_url: str, pg_url: str, schema: str, unique: str) -> Iterator[Two]:
    worker_name = f"ryw-{unique}"
    env = {
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": pg_url,
        "DATABASE_SCHEMA": schema,
        "WORKER_NAME": worker_name,
        "HTTP_WORKERS": "1",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
    }
    port_a, port_b = free_port(), free_port()
    a = Logged.start(
        "serve", env={**env, "HTTP_PORT": str(port_a), "MIN_POSITION_WAIT": str(SHORT_WAIT)}
    )
    b = Logged.start("serve", env={**env, "HTTP_PORT": str(port_b), "LOG_LEVEL": "DEBUG"})
    worker = Logged.start("worker", env=env)
    processes = [a.process, b.process, worker.process]
    try:
        base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        wait_for_http(f"{base_a}/livez", a.process)
        wait_for_http(f"{base_b}/livez", b.process)
        yield Two(base_a, base_b, b, pg_url, schema, worker_name)
        assert worker.process.poll() is None, worker.text()
    finally:
        codes = [stop_process(p) for p in processes]
        for logged in (a, b, worker):
            logged.finish()
    assert codes == [0, 0, 0]


def create(base: str, username: str) -> int:
    response = httpx.post(f"{base}/users", json={"username": username, "fullName": "Read Mine"})
    assert response.status_code == 201, response.text
    position = int(response.headers["X-Commit-Position"])
    assert position == response.json()["commitPosition"]
    return position


def test_a_read_through_another_process_waits_for_its_write(two_services: Two, unique: str) -> None:
    s = two_services
    warm = create(s.a, f"warm-{unique}")
    wait_for_checkpoint(s.pg_url, s.schema, s.worker_name, warm)
    held = HeldBack(s.pg_url, s.schema, s.worker_name)
    try:
        username = f"mine-{unique}"
        position = create(s.a, username)
        answers: list[httpx.Response] = []
        reader = threading.Thread(
            target=lambda: answers.append(
                httpx.get(
                    f"{s.b}/users/{username}",
                    headers={"X-Min-Position": str(position)},
                    timeout=30,
                )
            )
        )
        reader.start()
        s.b_log.wait_for(lambda line: f'"min_position":{position}' in line)
        assert not answers, "B answered before the worker could apply the write"
    finally:
        held.release()
    reader.join(timeout=30)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["username"] == username
    waits = scrape(f"{s.b}/metrics")
    assert value(waits, "usersvc_read_wait_seconds_count", outcome="caught_up") == 1


def test_a_read_still_behind_after_the_bounded_wait_is_503_with_the_checkpoint(
    two_services: Two, unique: str
) -> None:
    s = two_services
    warm = create(s.b, f"warm-{unique}")
    wait_for_checkpoint(s.pg_url, s.schema, s.worker_name, warm)
    held = HeldBack(s.pg_url, s.schema, s.worker_name)
    try:
        position = create(s.b, f"late-{unique}")
        started = time.monotonic()
        answer = httpx.get(
            f"{s.a}/users/late-{unique}", headers={"X-Min-Position": str(position)}, timeout=30
        )
        waited = time.monotonic() - started
    finally:
        held.release()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "projection_behind"
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["X-Checkpoint-Position"] == str(held.checkpoint)
    assert SHORT_WAIT <= waited < SHORT_WAIT + 3
    # Once the worker may go on, the same read answers.
    wait_for_checkpoint(s.pg_url, s.schema, s.worker_name, position)
    again = httpx.get(f"{s.a}/users/late-{unique}", headers={"X-Min-Position": str(position)})
    assert again.status_code == 200


def test_a_read_without_the_header_may_miss_the_write_meanwhile(
    two_services: Two, unique: str
) -> None:
    """The reason for the header: the same read without it answers at once, from a read model
    that has not applied the write yet."""
    s = two_services
    warm = create(s.a, f"warm-{unique}")
    wait_for_checkpoint(s.pg_url, s.schema, s.worker_name, warm)
    held = HeldBack(s.pg_url, s.schema, s.worker_name)
    try:
        create(s.a, f"unseen-{unique}")
        answer = httpx.get(f"{s.b}/users/unseen-{unique}")
        with psycopg.connect(s.pg_url) as conn:
            stored = read_checkpoint(conn, s.schema, s.worker_name)
    finally:
        held.release()
    assert answer.status_code == 404
    assert stored == held.checkpoint
    assert orjson.loads(answer.content)["error"]["code"] == "user_not_found"

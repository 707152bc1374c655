"""The service under gunicorn while a dependency hangs or a client sends garbage: a frozen
EventStoreDB holds only its share of the threads (reads go on), and a malformed chunked body is
a JSON 400 with no traceback in the log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from service.concurrency import STALLED
from tests.fixtures.fault_servers import EmulatorProcess
from tests.fixtures.processes import free_port, stop_process, wait_for_http

THREADS = 4
WRITERS = 8
ESDB_TIMEOUT = 4.0


@dataclass(frozen=True)
class Served:
    base_url: str
    port: int
    log: Path


@pytest.fixture
def served(
    esdb_process: EmulatorProcess, pg_url: str, schema: str, tmp_path: Path
) -> Iterator[Served]:
    """`usersvc serve`: one gunicorn worker of `THREADS` threads, its log in a file."""
    port = free_port()
    env = {
        **os.environ,
        "ESDB_CONNECTION_STRING": esdb_process.url,
        "DATABASE_URL": pg_url,
        "DATABASE_SCHEMA": schema,
        "HTTP_PORT": str(port),
        "HTTP_WORKERS": "1",
        "HTTP_THREADS": str(THREADS),
        "ESDB_TIMEOUT": str(ESDB_TIMEOUT),
        "LOG_LEVEL": "INFO",
        "AUTH_JWKS_URL": "",
        "AUTH_SIGNING_KEY_FILE": "",
    }
    log = tmp_path / "service.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "usersvc_cli.main", "serve"], env=env, stderr=sink
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/livez", process)
            yield Served(f"http://127.0.0.1:{port}", port, log)
        finally:
            assert stop_process(process) == 0


def test_a_frozen_event_store_leaves_threads_for_reads(
    served: Served, esdb_process: EmulatorProcess, unique: str
) -> None:
    answers: list[tuple[int, float]] = []

    def post(n: int) -> None:
        started = time.monotonic()
        response = httpx.post(
            f"{served.base_url}/users",
            json={"username": f"frozen-{n}-{unique}", "fullName": "F"},
            timeout=30,
        )
        answers.append((response.status_code, time.monotonic() - started))

    with httpx.Client(base_url=served.base_url, timeout=30) as http:
        assert http.get(f"/users/nobody-{unique}").status_code == 404
        with esdb_process.frozen():
            writers = [threading.Thread(target=post, args=(n,)) for n in range(WRITERS)]
            for thread in writers:
                thread.start()
            time.sleep(0.5)  # the writers' requests reach their threads; nothing to wait on
            reads: list[float] = []
            for _ in range(5):
                started = time.monotonic()
                assert http.get(f"/users/nobody-{unique}").status_code == 404
                reads.append(time.monotonic() - started)
            for thread in writers:
                thread.join(30)
    # Half the threads may wait on EventStoreDB, each up to its timeout; the rest serve reads.
    # The writers beyond the slots queue until the calls in flight have run a second (STALLED),
    # then answer 503 at once: a read waits that long at most, plus room for a busy machine.
    # Before the bound, a read waited for a writer's timeout (7.8 s measured).
    assert max(reads) < STALLED + 1.5, f"reads took {[round(r, 2) for r in reads]} s"
    assert [status for status, _ in answers] == [503] * WRITERS
    assert max(seconds for _, seconds in answers) < 2 * ESDB_TIMEOUT + 2


CUT_SHORT = b"5\r\n{}"


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", CUT_SHORT],
    ids=["bad chunk size", "no chunk terminator", "cut short"],
)
def test_a_malformed_chunked_body_is_a_json_400_without_a_traceback(
    served: Served, body: bytes
) -> None:
    request = (
        b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )
    response = _raw_request(served.port, request)
    head, _, payload = response.partition(b"\r\n\r\n")
    if body == CUT_SHORT:
        # The client closed its side mid-body: the front closes the connection, unanswered.
        assert response == b""
        assert b"Traceback" not in served.log.read_bytes()
        return
    assert head.startswith(b"HTTP/1.1 400"), response
    # Answered by the HTTP front (service/front.py) before Flask sees the request.
    assert orjson.loads(payload)["error"]["code"] == "malformed_request"
    assert b"Traceback" not in served.log.read_bytes()

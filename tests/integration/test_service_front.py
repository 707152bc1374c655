"""The HTTP front of `usersvc serve` against hostile clients, over raw sockets on 127.0.0.1:
slow clients hold sockets, not the threads other clients need, and whatever a client gets wrong
before Flask sees the request is answered in the JSON error shape."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.processes import free_port, wait_for_http
from tests.fixtures.slow_clients import (
    POST_HEAD,
    PROBE_BOUND,
    PROBES,
    SLOW_CLIENTS,
    trickling,
)

StartServe = Callable[..., tuple[str, subprocess.Popen[bytes]]]


def port_of(base: str) -> int:
    port = urlsplit(base).port
    assert port is not None
    return port


def test_fifty_slow_clients_leave_the_server_answering_everyone_else(
    start_serve: StartServe,
) -> None:
    base, _ = start_serve(False)
    with trickling(port_of(base)) as clients:
        answered: list[float] = []
        for _ in range(PROBES):
            started = time.monotonic()
            try:
                response = httpx.get(f"{base}/livez", timeout=PROBE_BOUND)
            except httpx.TimeoutException:
                continue
            if response.status_code == 200:
                answered.append(time.monotonic() - started)
            time.sleep(0.2)
        still_sending = sum(1 for c in clients if 0 < c.sent < len(c.trickle))
    assert len(answered) == PROBES, f"{PROBES - len(answered)} of {PROBES} probes unanswered"
    assert max(answered) < PROBE_BOUND
    assert still_sending > SLOW_CLIENTS // 2, "the slow clients were not slow while probed"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        assert self.headers.get("content-type") == "application/json", self
        document = json.loads(self.body)
        assert set(document) == {"error"}
        assert set(document["error"]) == {"code", "message"}
        return str(document["error"]["code"])


def exchange(port: int, *pieces: bytes, pause: float = 0.0, timeout: float = 10.0) -> Answer:
    """Send `pieces` (pausing `pause` s between them) on a new connection; read until the server
    closes it; the first response in it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server answered and closed early
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body[: int(headers["content-length"])])


TOO_LARGE_HEAD = b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
MALFORMED_CASES = {
    "not HTTP": (b"HELLO\r\n\r\n",),
    "space in the target": (b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",),
    "no version": (b"GET /livez\r\n\r\n",),
    "space in a header name": (b"GET /livez HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n",),
    "header without colon": (b"GET /livez HTTP/1.1\r\nHost: t\r\nnocolon\r\n\r\n",),
    "no Host": (b"GET /livez HTTP/1.1\r\n\r\n",),
    "two lengths": (POST_HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",),
    "length and chunks": (
        POST_HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    "chunk size not hex": (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",),
    "chunk framing broken midway": (
        POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
        b"2\r\n{}\r\n",
        b"3\r\nabcdef\r\n0\r\n\r\n",
    ),
    "unknown transfer coding": (POST_HEAD + b"Transfer-Encoding: gzip\r\n\r\n",),
}


@pytest.mark.parametrize("pieces", MALFORMED_CASES.values(), ids=MALFORMED_CASES.keys())
def test_malformed_http_is_a_json_400_without_a_traceback(
    start_serve: StartServe, tmp_path: Path, pieces: tuple[bytes, ...]
) -> None:
    log = tmp_path / "serve.log"
    base, _ = start_serve(False, stderr=log)
    answer = exchange(port_of(base), *pieces, pause=0.1)
    assert answer.status == 400
    assert answer.error_code() == "malformed_request"
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    ("pieces", "pause"),
    [
        ((TOO_LARGE_HEAD,), 0.0),
        ((TOO_LARGE_HEAD[:9000], TOO_LARGE_HEAD[9000:18000], TOO_LARGE_HEAD[18000:]), 0.1),
        ((b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",), 0.0),
    ],
    ids=["in one piece", "in pieces", "request line"],
)
def test_a_head_too_large_is_a_json_431(
    start_serve: StartServe, pieces: tuple[bytes, ...], pause: float
) -> None:
    base, _ = start_serve(False)
    answer = exchange(port_of(base), *pieces, pause=pause)
    assert answer.status == 431
    assert answer.error_code() == "headers_too_large"


def test_a_declared_body_over_the_limit_is_a_json_413_before_it_is_sent(
    start_serve: StartServe,
) -> None:
    base, _ = start_serve(False)
    answer = exchange(port_of(base), POST_HEAD + b"Content-Length: 100000\r\n\r\n{")
    assert answer.status == 413
    assert answer.error_code() == "payload_too_large"


@pytest.mark.parametrize(
    "pieces",
    [
        (b"GET /livez HTTP/1.1\r\nHost: t\r\n",),
        (POST_HEAD + b"Content-Length: 20\r\n\r\n{",),
        (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",),
    ],
    ids=["head", "body of a declared length", "chunked body"],
)
def test_a_request_that_does_not_arrive_in_time_is_a_json_408(
    start_serve: StartServe, pieces: tuple[bytes, ...]
) -> None:
    base, _ = start_serve(False, request_timeout=1.0)
    started = time.monotonic()
    answer = exchange(port_of(base), *pieces)
    assert answer.status == 408
    assert answer.error_code() == "request_timeout"
    assert time.monotonic() - started < 5


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(
    start_serve: StartServe,
) -> None:
    base, _ = start_serve(False, request_timeout=1.0)
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(65536) == b""
        assert time.monotonic() - started < 5


def test_gunicorn_run_by_hand_with_the_front_worker_serves_the_same_front(
    esdb_url: str, pg_url: str, schema: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "USERSVC_CONFIG": str(tmp_path / "absent.toml"),
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": pg_url,
        "DATABASE_SCHEMA": schema,
        "LOG_LEVEL": "WARNING",
        "METRICS_ENABLED": "false",
    }
    command = [
        *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"),
        *("--worker-class", "service.runner.FrontWorker"),
        *("--logger-class", "service.gunicorn_logs.GunicornLogger"),
        "service.wsgi:create_front()",
    ]
    process = subprocess.Popen(command, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/livez", process)
        answer = exchange(port, b"HELLO\r\n\r\n")
        assert answer.error_code() == "malformed_request"
        process.terminate()
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_stop_with_slow_clients_under_way_tells_them_and_exits_0_in_time(
    start_serve: StartServe, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    base, process = start_serve(False, stderr=log, LOG_LEVEL="INFO")
    slow = [socket.create_connection(("127.0.0.1", port_of(base)), timeout=20) for _ in range(3)]
    try:
        for sock in slow:
            sock.sendall(POST_HEAD + b"Content-Length: 100\r\n\r\n{")
        time.sleep(0.5)  # the requests are under way
        process.terminate()
        assert process.wait(30) == 100
        # Within gunicorn's graceful timeout: no worker had to be killed.
        assert "SIGKILL" not in log.read_text()
        assert "Worker exiting" in log.read_text()
        for sock in slow:
            assert sock.recv(65536).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in slow:
            sock.close()

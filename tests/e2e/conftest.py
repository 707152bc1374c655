"""End-to-end fixtures: the real service under gunicorn and the real worker, as subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT
) -> None:
    """Wait until a freshly started server answers; fail at once if its process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)  # the server is binding its port; this is not a wait for the worker
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode


@dataclass(frozen=True)
class System:
    base_url: str
    pg_url: str
    schema: str
    worker_name: str
    http: httpx.Client


def usersvc(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "usersvc_cli.main", *args], env={**os.environ, **env}
    )


@pytest.fixture
def system(esdb_url: str, pg_url: str, schema: str, unique: str) -> Iterator[System]:
    port = free_port()
    worker_name = f"e2e-{unique}"
    env = {
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": pg_url,
        "DATABASE_SCHEMA": schema,
        "HTTP_PORT": str(port),
        "WORKER_NAME": worker_name,
        "LOG_LEVEL": "WARNING",
    }
    service = usersvc("serve", env=env)
    worker = usersvc("worker", env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base_url}/health", service)
        with httpx.Client(base_url=base_url, timeout=10.0) as http:
            yield System(base_url, pg_url, schema, worker_name, http)
        assert worker.poll() is None, "the worker died during the test"
    finally:
        codes = [stop_process(service), stop_process(worker)]
    assert codes == [0, 0], f"service and worker must stop cleanly on SIGTERM, got {codes}"

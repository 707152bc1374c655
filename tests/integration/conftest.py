"""Integration fixtures: `usersvc serve` in a child process, as its tests start it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.processes import free_port, wait_for_http


@pytest.fixture
def start_serve(
    esdb_url: str, pg_url: str, schema: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes]]]]:
    """Start `serve(load_settings(), debug=...)` in a child that exits with 100 + its result;
    `extra` adds to its environment, `request_timeout` replaces the front's deadline (seconds),
    `stderr` is a file for what the child writes there."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        debug: bool,
        *,
        request_timeout: float | None = None,
        stderr: Path | None = None,
        **extra: str,
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        env = {
            **os.environ,
            "USERSVC_CONFIG": str(tmp_path / "absent.toml"),
            "ESDB_CONNECTION_STRING": esdb_url,
            "DATABASE_URL": pg_url,
            "DATABASE_SCHEMA": schema,
            "HTTP_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            **extra,
        }
        code = "import sys\nimport service.front\nfrom service.runner import serve\n"
        if request_timeout is not None:
            code += f"service.front.REQUEST_TIMEOUT = {request_timeout!r}\n"
        code += (
            "from usersvc.settings import load_settings\n"
            f"sys.exit(100 + serve(load_settings(), debug={debug!r}))\n"
        )
        err = open(stderr, "ab") if stderr is not None else None  # noqa: SIM115
        try:
            process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=err)
        finally:
            if err is not None:
                err.close()
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health", process)
        return base, process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)

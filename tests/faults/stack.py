"""The whole system as processes this test suite owns, so that it can kill, freeze and restart
each of them: the emulator and a PostgreSQL server (tests.fixtures.fault_servers), the service
(`usersvc serve`) and the worker (`usersvc worker`). Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fixtures.fault_servers import STARTUP_TIMEOUT, EmulatorProcess, OwnPostgres
from tests.fixtures.processes import free_port, stop_process, wait_for_http
from tests.fixtures.waiting import wait_for_checkpoint


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
    emulator: EmulatorProcess
    postgres: OwnPostgres
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

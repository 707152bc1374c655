"""`usersvc dev`: the whole system with no Docker, started, used, stopped and started again."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.processes import free_port
from tests.fixtures.waiting import wait_for_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 90.0


class DevProcess:
    """`usersvc dev` in a subprocess, its standard output and error read as one stream of lines
    (kept in `output`), with its announcement parsed from it."""

    def __init__(
        self,
        data_dir: Path,
        http_port: int,
        esdb_port: int,
        log_level: str = "WARNING",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "DATABASE_SCHEMA", "ESDB_CONNECTION_STRING"}
        }
        env.update({"USERSVC_CONFIG": str(ROOT / "config.toml"), "LOG_LEVEL": log_level})
        env.update(extra_env or {})
        self.env = env
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "usersvc_cli.main",
                "dev",
                "--data-dir",
                str(data_dir),
                "--http-port",
                str(http_port),
                "--esdb-port",
                str(esdb_port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.base_url = f"http://127.0.0.1:{http_port}"
        self.database_url, self.database_label = self._announced("PostgreSQL")

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def admin_token(self) -> str:
        """The token of the line `Admin token: ...` that follows the announcement."""
        while True:
            try:
                line = self.lines.get(timeout=STARTUP_TIMEOUT)
            except queue.Empty:
                raise AssertionError("usersvc dev printed no 'Admin token:' line") from None
            if line.startswith("Admin token: "):
                return line.removeprefix("Admin token: ").strip()

    def _announced(self, label: str) -> tuple[str, str]:
        """The value and the note in parentheses on the announcement's `label` line."""
        while True:
            try:
                line = self.lines.get(timeout=STARTUP_TIMEOUT)
            except queue.Empty:
                raise AssertionError(
                    f"usersvc dev did not announce {label} (exit code {self.process.poll()});"
                    f" its output:\n{''.join(self.output)}"
                ) from None
            match = re.match(rf"\s+{label}\s+(\S+)\s+\((.*)\)$", line)
            if match:
                return match[1], match[2]

    def output_before_announcement(self) -> list[str]:
        """The non-blank lines written before "usersvc dev is up"."""
        lines = self.output[:]
        end = next(i for i, line in enumerate(lines) if line.startswith("usersvc dev is up"))
        return [line for line in lines[:end] if line.strip()]

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.close()

    def close(self) -> int:
        """Wait for the process to end (killing it after a minute) and release its pipe."""
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._pump_thread.join(10)
        assert self.process.stdout is not None
        # Children that outlived a killed `usersvc dev` still hold the pipe open; closing it
        # under the reading thread would block, so it is closed only once that thread is done.
        if not self._pump_thread.is_alive():
            self.process.stdout.close()
        return code


@pytest.fixture
def dev_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def start_dev(dev_ports: tuple[int, int]) -> Iterator[object]:
    # Not under pytest's temp root: a concurrent pytest run prunes old runs' folders there, which
    # pulled the data directory from under a running PostgreSQL.
    root = Path(tempfile.mkdtemp(prefix="usersvc-dev-"))
    started: list[DevProcess] = []

    def start(log_level: str = "WARNING", extra_env: dict[str, str] | None = None) -> DevProcess:
        dev = DevProcess(root / "dev", *dev_ports, log_level, extra_env)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        # Interrupted, not killed: a killed `usersvc dev` would leave its children and its
        # PostgreSQL running. close() kills it if it does not stop within a minute.
        if dev.process.poll() is None:
            dev.process.send_signal(signal.SIGINT)
        dev.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_dev_runs_the_whole_system_and_keeps_data_across_restarts(start_dev, unique: str) -> None:  # type: ignore[no-untyped-def]
    username = f"dev-{unique}"
    dev = start_dev()
    created = httpx.post(
        f"{dev.base_url}/users", json={"username": username, "fullName": "Dev User"}
    )
    assert created.status_code == 201, created.text
    wait_for_checkpoint(
        dev.database_url,
        "eventsourcing",
        "usersvc-read-model",
        created.json()["commitPosition"],
        timeout=30,
    )
    assert httpx.get(f"{dev.base_url}/users/{username}").json()["fullName"] == "Dev User"
    admin = {"Authorization": f"Bearer {dev.admin_token()}"}
    assert httpx.get(f"{dev.base_url}/users/{username}/events", headers=admin).status_code == 200
    assert dev.interrupt() == 0

    again = start_dev()
    assert httpx.get(f"{again.base_url}/users/{username}").json()["fullName"] == "Dev User"
    duplicate = httpx.post(f"{again.base_url}/users", json={"username": username, "fullName": "X"})
    assert duplicate.status_code == 409
    # The key is kept: the first run's admin token still works, and `usersvc token` signs with it.
    assert httpx.get(f"{again.base_url}/users/{username}/events", headers=admin).status_code == 200
    minted = subprocess.run(
        [
            sys.executable,
            "-m",
            "usersvc_cli.main",
            "token",
            "--sub",
            username,
            "--data-dir",
            str(again.data_dir),
        ],
        env=again.env,
        capture_output=True,
        text=True,
        check=True,
    )
    changed = httpx.patch(
        f"{again.base_url}/users/{username}",
        json={"fullName": "Renamed"},
        headers={"Authorization": f"Bearer {minted.stdout.strip()}", "If-Match": '"0"'},
    )
    assert changed.status_code == 200, changed.text
    assert again.interrupt() == 0


# A log line: time, level, the name of the process that wrote it, the logger, the message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (\S+) \S+: ")


@pytest.mark.slow
def test_dev_names_each_process_in_its_log_lines_and_keeps_postgres_start_up_in_a_file(
    start_dev, unique: str
) -> None:  # type: ignore[no-untyped-def]
    dev = start_dev(log_level="INFO")
    created = httpx.post(
        f"{dev.base_url}/users", json={"username": f"logs-{unique}", "fullName": "Log Lines"}
    )
    assert created.status_code == 201, created.text
    wait_for_checkpoint(
        dev.database_url,
        "eventsourcing",
        "usersvc-read-model",
        created.json()["commitPosition"],
        timeout=30,
    )
    assert dev.interrupt() == 0
    before = dev.output_before_announcement()
    names = {match[1] for line in dev.output if (match := LOG_LINE.match(line))}
    assert names >= {"emulator", "migrate", "service", "worker"}, names
    assert "MainProcess" not in names
    assert [line for line in before if not LOG_LINE.match(line)] == []
    assert [line for line in before if "pgserver" in line] == []
    assert len(before) <= 20, "".join(before)
    log_path = Path(re.findall(r"its log in (\S+?);", dev.database_label)[0])
    assert "pgserver" in log_path.read_text()


def with_password(url: str, password: str) -> str:
    """`url` with `password` in it (PostgreSQL's trust authentication, as the test servers
    use, accepts any), or `url` itself when it already has one."""
    parts = urlsplit(url)
    if parts.password:
        return url
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.slow
def test_dev_shows_no_password_in_anything_it_prints(start_dev, pg_url: str, unique: str) -> None:  # type: ignore[no-untyped-def]
    url = with_password(pg_url, f"dev-secret-{unique}")
    secret = urlsplit(url).password
    assert secret
    dev = start_dev(
        log_level="DEBUG", extra_env={"DATABASE_URL": url, "DATABASE_SCHEMA": f"dev_{unique}"}
    )
    created = httpx.post(
        f"{dev.base_url}/users", json={"username": f"pw-{unique}", "fullName": "Masked"}
    )
    assert created.status_code == 201, created.text
    assert dev.interrupt() == 0
    assert secret not in dev.database_url
    assert ":***@" in dev.database_url
    assert [line for line in dev.output if secret in line] == []

"""Emulator-only: `python -m esdb_emulator` serves until SIGTERM and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, StreamState

from esdb_emulator.store import Store
from tests.compat.conftest import events
from tests.compat.test_durability import recorded
from tests.fixtures.backends import EsdbTarget


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("storage", ["--mem", "--data-dir"])
def test_the_command_serves_and_stops_cleanly_on_sigterm(
    esdb_server: EsdbTarget, tmp_path: object, storage: str
) -> None:
    if esdb_server.real:
        pytest.skip("starts the emulator's own command; a real server is in use")
    port = free_port()
    argv = [sys.executable, "-m", "esdb_emulator", "--port", str(port), storage]
    if storage == "--data-dir":
        argv.append(str(tmp_path))
    with subprocess.Popen(argv, stderr=subprocess.PIPE) as process:
        try:
            url = f"esdb://127.0.0.1:{port}?tls=false"
            deadline = time.monotonic() + 20
            while True:
                try:
                    client = EventStoreDBClient(url)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "the emulator did not start"
                    assert process.poll() is None, "the emulator exited"
                    time.sleep(0.1)
            client.append_to_stream("cli", current_version=StreamState.NO_STREAM, events=events(1))
            client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0


def test_a_failing_import_exits_1_without_serving(
    esdb_server: EsdbTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if esdb_server.real:
        pytest.skip("runs the emulator's own command; a real server is in use")
    from esdb_emulator.cli import main

    bundle = types.ModuleType("repro.bundle")
    bundle.read_bundle = lambda path: [  # type: ignore[attr-defined]
        recorded(5_000, "imported", 0),
        recorded(4_000, "imported", 1),
    ]
    monkeypatch.setitem(sys.modules, "repro.bundle", bundle)
    # main() sets up process-wide logging; inside pytest that would replace its handlers.
    monkeypatch.setattr("usersvc.logs.configure_logging", lambda level: None)
    data_dir = tmp_path / "data"
    argv = ["--port", "0", "--data-dir", str(data_dir), "--import", str(tmp_path / "b")]
    assert main(argv) == 1
    store = Store(data_dir)
    try:
        assert store.last_position() < 4_000
    finally:
        store.close()

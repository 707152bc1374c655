"""The worker when EventStoreDB cannot be reached: retries with backoff, logged, until stopped."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from tests.fixtures.waiting import logged
from usersvc.settings import SettingsError, load_settings
from worker.runner import run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_eventstoredb_is_retried_with_logged_attempts_until_stopped(
    pg_url: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    settings = load_settings(
        esdb_connection_string=f"esdb://127.0.0.1:{closed_port()}?tls=false",
        database_url=pg_url,
        database_schema=schema,
        worker_backoff_initial=0.01,
        worker_backoff_max=0.05,
    )
    stop = threading.Event()
    codes: list[int] = []
    with logged("worker.runner", "(attempt 3)") as third_attempt:
        thread = threading.Thread(target=lambda: codes.append(run(settings, stop=stop)))
        thread.start()
        try:
            assert third_attempt.wait(30), "the worker did not retry three times"
        finally:
            stop.set()
            thread.join(30)
    assert codes == [0]
    retries = [r for r in caplog.records if "EventStoreDB unavailable" in r.getMessage()]
    assert [r.levelno for r in retries[:3]] == [logging.WARNING] * 3
    assert all("retrying in" in r.getMessage() for r in retries)


def test_a_missing_database_url_is_a_settings_error_naming_the_key(schema: str) -> None:
    settings = load_settings(database_url=None, database_schema=schema)
    with pytest.raises(SettingsError, match="database_url"):
        run(settings, stop=threading.Event())

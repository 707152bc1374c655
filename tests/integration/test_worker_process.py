"""The worker as a real process (`python -m worker`): SIGTERM, and a SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from esdbclient import EventStoreDBClient

from tests.fixtures.history import append_users, projected
from tests.fixtures.waiting import read_checkpoint, wait_for_checkpoint

WORKER = "process-worker"
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(esdb_url: str, pg_url: str, schema: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": pg_url,
        "DATABASE_SCHEMA": schema,
        "WORKER_NAME": WORKER,
        "WORKER_BATCH_SIZE": "5",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_sigterm_stops_a_worker_process_with_exit_code_0(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    client = EventStoreDBClient(esdb_url)
    try:
        with worker_process(esdb_url, pg_url, schema) as process:
            positions = append_users(client, [f"st-{unique}"])
            wait_for_checkpoint(pg_url, schema, WORKER, positions[-1], timeout=30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
    finally:
        client.close()


def test_a_worker_killed_mid_stream_and_restarted_neither_duplicates_nor_loses(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    names = [f"kl-{unique}-{i:03d}" for i in range(300)]
    client = EventStoreDBClient(esdb_url)
    try:
        positions = append_users(client, names)
        with worker_process(esdb_url, pg_url, schema) as process:
            wait_for_checkpoint(pg_url, schema, WORKER, positions[20], timeout=30)
            process.kill()
            process.wait(10)
        with psycopg.connect(pg_url) as conn:
            killed_at = read_checkpoint(conn, schema, WORKER)
        assert killed_at is not None
        with worker_process(esdb_url, pg_url, schema):
            wait_for_checkpoint(pg_url, schema, WORKER, positions[-1], timeout=60)
    finally:
        client.close()
    assert projected(pg_url, schema, f"kl-{unique}-") == list(zip(names, positions, strict=True))

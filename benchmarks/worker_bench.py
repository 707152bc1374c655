"""Worker catch-up speed: the batched worker against a naive one-transaction-per-event projector.

    python -m benchmarks.worker_bench [--events 100000] [--naive-sample 10000]

Starts an emulator on a temporary data directory and an embedded PostgreSQL (or uses
`DATABASE_URL`), writes `--events` `user-created` events (appends from several threads), then
measures, in the same run and against the same store:
- the real worker (`worker.runner.run`) catching up all of them into a fresh schema, timed from
  start until its checkpoint reaches the last event;
- a naive projector (the same subscription and projection code, but one transaction per event)
  over the first `--naive-sample` events, its rate then being compared per event.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.events import USER_CREATED, UserCreated, encode_metadata, encode_user_created
from usersvc.settings import load_settings
from worker import source
from worker.migrator import migrate
from worker.projection import Projection
from worker.runner import run

APPEND_THREADS = 8


@contextmanager
def postgres(data_dir: Path) -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    import pgserver

    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def write_events(url: str, count: int, prefix: str) -> int:
    """Append `count` user-created events, one stream each; return the last commit position."""
    opened = datetime.now(UTC)
    metadata = encode_metadata()

    def append_range(start: int) -> int:
        client = EventStoreDBClient(url)
        last = 0
        try:
            for i in range(start, count, APPEND_THREADS):
                name = f"{prefix}{i:07d}"
                data = encode_user_created(UserCreated(name, f"Bench User {i}", opened))
                event = NewEvent(type=USER_CREATED, data=data, metadata=metadata)
                position = client.append_to_stream(
                    f"user-{name}", current_version=StreamState.NO_STREAM, events=[event]
                )
                last = max(last, position)
        finally:
            client.close()
        return last

    with ThreadPoolExecutor(APPEND_THREADS) as pool:
        return max(pool.map(append_range, range(APPEND_THREADS)))


def time_worker(esdb_url: str, pg_url: str, last: int, batch_size: int) -> float:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    migrate(pg_url, schema)
    settings = load_settings(
        esdb_connection_string=esdb_url,
        database_url=pg_url,
        database_schema=schema,
        worker_name="bench",
        worker_batch_size=batch_size,
    )
    stop = threading.Event()
    codes: list[int] = []
    started = time.perf_counter()
    thread = threading.Thread(target=lambda: codes.append(run(settings, stop=stop)))
    thread.start()
    try:
        wait_for_checkpoint(pg_url, schema, "bench", last, timeout=600)
        return time.perf_counter() - started
    finally:
        stop.set()
        thread.join()


def time_naive(esdb_url: str, pg_url: str, sample: int) -> tuple[int, float]:
    """One transaction per event over the first `sample` events; return (events, seconds)."""
    schema = f"naive_{uuid.uuid4().hex[:8]}"
    migrate(pg_url, schema)
    projection = Projection(schema, "naive")
    client = EventStoreDBClient(esdb_url)
    done = 0
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            started = time.perf_counter()
            subscription = client.subscribe_to_all(**source.subscription_filter())
            for recorded in subscription:
                with conn.transaction():
                    projection.apply(conn, [source.to_stored(recorded)])
                done += 1
                if done >= sample:
                    break
            elapsed = time.perf_counter() - started
            subscription.stop()
    finally:
        client.close()
    return done, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)

    from esdb_emulator import EmbeddedServer

    out = sys.stdout
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedServer(data_dir=Path(tmp) / "esdb") as server,
        postgres(Path(tmp) / "pg") as pg,
    ):
        url = server.connection_string
        started = time.perf_counter()
        last = write_events(url, args.events, f"b{uuid.uuid4().hex[:6]}-")
        writing = time.perf_counter() - started
        out.write(f"wrote {args.events} events in {writing:.1f} s (setup, not measured)\n")

        worker_s = time_worker(url, pg, last, args.batch_size)
        worker_rate = args.events / worker_s
        out.write(
            f"worker (batch size {args.batch_size}): {args.events} events in {worker_s:.2f} s"
            f" = {worker_rate:,.0f} events/s\n"
        )
        naive_n, naive_s = time_naive(url, pg, min(args.naive_sample, args.events))
        naive_rate = naive_n / naive_s
        out.write(
            f"naive (1 transaction per event, sample of {naive_n}): {naive_s:.2f} s"
            f" = {naive_rate:,.0f} events/s"
            f" (scaled to {args.events}: {args.events / naive_rate:.1f} s)\n"
        )
        out.write(f"speed-up: {worker_rate / naive_rate:.1f}x\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

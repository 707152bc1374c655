"""Worker catch-up speed: the batched worker against a naive one-transaction-per-event projector.

    python -m benchmarks.worker_bench [--events 100000] [--naive-sample 10000]

Setup (not measured): an embedded PostgreSQL (or `DATABASE_URL`) and the emulator in its own
process, as `usersvc emulator --import` runs it, loaded with `--events` generated
`user-created` events. Then it measures, in the same run and against the same store:
- the real worker (`worker.runner.run`) catching up all of them into a fresh schema, timed from
  start until its checkpoint reaches the last event;
- a naive projector (the same subscription and projection code, but one transaction per event)
  over the first `--naive-sample` events, its rate then being compared per event.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from esdbclient import EventStoreDBClient

from benchmarks.support import emulator_process, history_bundle, postgres
from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.settings import load_settings
from worker import subscription as source
from worker.migrator import migrate
from worker.projection import Projection
from worker.runner import run


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
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args(argv)

    out = sys.stdout
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as pg:
        bundle = Path(tmp) / "history.bundle"
        last = history_bundle(bundle, args.events)
        started = time.perf_counter()
        with emulator_process(bundle) as url:
            out.write(
                f"setup: emulator process loaded with {args.events} events in "
                f"{time.perf_counter() - started:.1f} s (not measured)\n"
            )
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

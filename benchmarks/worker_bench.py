"""Worker catch-up speed against esdbclient reading the same events and doing nothing with them.

    python -m benchmarks.worker_bench [--events 100000] [--rounds 2] [--naive-sample 10000]

Setup (not measured): an embedded PostgreSQL (or `DATABASE_URL`) and the emulator in its own
process, as `usersvc emulator --import` runs it, loaded with `--events` generated `user-created`
events. Then, `--rounds` times, against the same store:
- the ceilings: esdbclient's catch-up subscription with the worker's filter and options (what
  the worker reads through) and `read_all` with the same filter, each counting the events and
  doing nothing else;
- the real worker catching up all of them into a fresh schema, timed from its start until its
  checkpoint reaches the last event.
The best round of each is reported, and the worker's rate as a multiple of the subscription's
(target: at least 0.8x). Last, a naive projector (one transaction per event) over the first
`--naive-sample` events, for scale (0 skips it).
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

from benchmarks import ceilings
from benchmarks.ceilings import Measured, against, best
from benchmarks.support import emulator_process, history_bundle, load_average, postgres
from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.settings import load_settings
from worker import subscription as source
from worker.migrator import migrate
from worker.projection import Projection
from worker.runner import run

TARGET = 0.8  # of the catch-up subscription's rate


def time_worker(esdb_url: str, pg_url: str, last: int, batch_size: int) -> float:
    """Seconds the worker takes from its start to a checkpoint at `last`, in a fresh schema.
    The one place that knows how to run the worker."""
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


def time_naive(esdb_url: str, pg_url: str, sample: int) -> Measured:
    """One transaction per event over the first `sample` events."""
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
    return Measured(done, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="ceilings and worker, best kept")
    parser.add_argument("--naive-sample", type=int, default=10_000, help="0 skips it")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args(argv)

    out = sys.stdout
    out.write(f"start: {load_average()}\n")
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as pg:
        bundle = Path(tmp) / "history.bundle"
        last = history_bundle(bundle, args.events)
        started = time.perf_counter()
        with emulator_process(bundle) as url:
            out.write(
                f"setup: emulator process loaded with {args.events:,} events in "
                f"{time.perf_counter() - started:.1f} s (not measured)\n"
            )
            subscribed: list[Measured] = []
            read: list[Measured] = []
            worker: list[Measured] = []
            for round_ in range(1, args.rounds + 1):
                subscribed.append(ceilings.catch_up(url))
                read.append(ceilings.read_all(url))
                worker.append(Measured(args.events, time_worker(url, pg, last, args.batch_size)))
                out.write(
                    f"round {round_}: subscription {subscribed[-1].rate:,.0f} events/s,"
                    f" read_all {read[-1].rate:,.0f} events/s,"
                    f" worker {worker[-1].rate:,.0f} events/s"
                    f" ({worker[-1].rate / subscribed[-1].rate:.2f}x the subscription)\n"
                )
            ceiling, read_best, figure = best(subscribed), best(read), best(worker)
            for label, measured in (
                ("ceiling: catch-up subscription, filtered, doing nothing", ceiling),
                ("ceiling: read_all, filtered, doing nothing", read_best),
            ):
                out.write(
                    f"{label}: {measured.count:,} events in {measured.seconds:.2f} s"
                    f" = {measured.rate:,.0f} events/s\n"
                )
            out.write(
                f"worker (batch size {args.batch_size}): {figure.count:,} events in"
                f" {figure.seconds:.2f} s = {figure.rate:,.0f} events/s;"
                f" {against(figure, ceiling, TARGET)};"
                f" {figure.rate / read_best.rate:.2f}x read_all\n"
            )
            if args.naive_sample > 0:
                naive = time_naive(url, pg, min(args.naive_sample, args.events))
                out.write(
                    f"naive (1 transaction per event, sample of {naive.count:,}):"
                    f" {naive.seconds:.2f} s = {naive.rate:,.0f} events/s; the worker is"
                    f" {figure.rate / naive.rate:.1f}x faster\n"
                )
    out.write(f"end: {load_average()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replay speed: 1,000,000 `user-created` events into a fresh PostgreSQL.

    python -m benchmarks.replay_bench [--events 1000000] [--naive-sample 20000]

Setup (not measured): an embedded PostgreSQL (or `DATABASE_URL`), a bundle of `--events`
generated events, and an in-memory emulator process loaded with the same bundle. Then, in one
run:
- replay from the bundle (the verification pass over the file included);
- replay from the emulator (its own process, loaded with `--import`) over gRPC through
  esdbclient;
- a naive replay, one transaction per event, over the first `--naive-sample` events; its rate
  is per event, so it is scaled to `--events` for the comparison (said in the output).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from benchmarks.support import emulator_process, generate, history_bundle, postgres
from repro.history import BundleSource, EsdbSource, EventSource
from repro.replay import ReplayRequest, replay
from usersvc.records import StoredEvent
from worker.migrator import migrate
from worker.projection import Projection

WORKER = "usersvc-read-model"


def timed_replay(source: EventSource, url: str, schema: str) -> tuple[float, int]:
    started = time.perf_counter()
    summary = replay(source, ReplayRequest(target_url=url, schema=schema, checkpoint_name=WORKER))
    return time.perf_counter() - started, summary.applied


def naive(url: str, schema: str, events: list[StoredEvent]) -> float:
    migrate(url, schema)
    projection = Projection(schema, WORKER)
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        for event in events:
            with conn.transaction():
                projection.apply(conn, [event])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=20_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = sys.stdout.write
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as url:
        started = time.perf_counter()
        bundle = Path(tmp) / "history.bundle"
        history_bundle(bundle, args.events)
        out(
            f"setup: bundle of {args.events:,} events written in "
            f"{time.perf_counter() - started:.1f} s ({bundle.stat().st_size / 1e6:.0f} MB)\n"
        )
        suffix = uuid.uuid4().hex[:6]

        seconds, applied = timed_replay(BundleSource(bundle), url, f"bench_bundle_{suffix}")
        bundle_rate = applied / seconds
        out(
            f"replay from bundle: {applied:,} events in {seconds:.1f} s = "
            f"{bundle_rate:,.0f} events/s\n"
        )

        started = time.perf_counter()
        with emulator_process(bundle) as esdb_url:
            out(f"setup: emulator process loaded in {time.perf_counter() - started:.1f} s\n")
            source = EsdbSource(esdb_url)
            seconds, applied = timed_replay(source, url, f"bench_grpc_{suffix}")
            source.close()
        grpc_rate = applied / seconds
        out(
            f"replay from emulator (gRPC): {applied:,} events in {seconds:.1f} s = "
            f"{grpc_rate:,.0f} events/s\n"
        )

        sample = list(generate(min(args.naive_sample, args.events)))
        seconds = naive(url, f"bench_naive_{suffix}", sample)
        naive_rate = len(sample) / seconds
        out(
            f"naive replay (1 transaction per event, sample of {len(sample):,}): "
            f"{naive_rate:,.0f} events/s, scaled to {args.events:,}: "
            f"{args.events / naive_rate:.0f} s\n"
        )
        out(
            f"speed-up from bundle: {bundle_rate / naive_rate:.1f}x; "
            f"from gRPC: {grpc_rate / naive_rate:.1f}x\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replay speed, from a bundle and over gRPC, against ceilings measured in the same run.

    python -m benchmarks.replay_bench [--events 1000000] [--grpc-events 200000] [--rounds 2]
                                      [--naive-sample 20000] [--skip-grpc]

Setup (not measured): an embedded PostgreSQL (or `DATABASE_URL`), a bundle of `--events`
generated `user-created` events (with the manifest `usersvc export` writes), and an in-memory
emulator process loaded with a bundle of `--grpc-events` such events. Then:
- from a bundle, `--rounds` times: the COPY ceiling (the same rows, encoded beforehand in COPY's
  binary format, copied into a fresh schema's table and committed), then the replay of the
  bundle into a fresh schema, its integrity check included. Targets: at most 12 s per
  1,000,000 events, and at least 0.5x the COPY ceiling's rows/s;
- over gRPC, `--rounds` times: the read-only ceiling (esdbclient's `read_all` of the same events,
  filtered as the worker filters, doing nothing with them), then the replay from the emulator.
  Target: at least 0.9x the ceiling's events/s;
- a naive replay, one transaction per event, over the first `--naive-sample` events, for scale
  (0 skips it).
The best round of each is compared (the one least disturbed by the machine's other load); every
round is printed too.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TextIO

import psycopg

from benchmarks import ceilings
from benchmarks.ceilings import Measured, against, best, drop_schema
from benchmarks.support import emulator_process, generate, history_bundle, load_average, postgres
from repro.bundle import read_bundle
from repro.history import BundleSource, EsdbSource, EventSource
from repro.replay import ReplayRequest, replay
from usersvc.records import StoredEvent
from worker.migrator import migrate
from worker.projection import Projection

WORKER = "usersvc-read-model"
BUNDLE_SECONDS_PER_MILLION = 12.0
BUNDLE_TARGET = 0.5  # of the COPY ceiling's rows/s
GRPC_TARGET = 0.9  # of esdbclient's read_all events/s


def replay_once(source: Path | str, pg_url: str, schema: str) -> Measured:
    """Replay all of `source` (a bundle, or an EventStoreDB connection string) into `schema`,
    timed from opening the source (a bundle's integrity check included) to the end. The one
    place that knows the replay's entry point."""
    started, cpu = time.perf_counter(), time.process_time()
    history: EventSource = BundleSource(source) if isinstance(source, Path) else EsdbSource(source)
    try:
        summary = replay(
            history, ReplayRequest(target_url=pg_url, schema=schema, checkpoint_name=WORKER)
        )
    finally:
        history.close()
    return Measured(summary.applied, time.perf_counter() - started, time.process_time() - cpu)


def naive(url: str, schema: str, events: list[StoredEvent]) -> Measured:
    migrate(url, schema)
    projection = Projection(schema, WORKER)
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        for event in events:
            with conn.transaction():
                projection.apply(conn, [event])
    return Measured(len(events), time.perf_counter() - started)


def fresh_schema(kind: str) -> str:
    return f"bench_{kind}_{uuid.uuid4().hex[:6]}"


def measure_bundle(out: TextIO, pg: str, bundle: Path, rounds: int) -> tuple[Measured, Measured]:
    started = time.perf_counter()
    payload = ceilings.copy_payload(read_bundle(bundle))
    out.write(
        f"setup: {payload.rows:,} rows encoded for COPY in {time.perf_counter() - started:.1f} s"
        " (not measured)\n"
    )
    copies: list[Measured] = []
    replays: list[Measured] = []
    for round_ in range(1, rounds + 1):
        copies.append(ceilings.copy_rows(pg, payload))
        schema = fresh_schema("bundle")
        replays.append(replay_once(bundle, pg, schema))
        drop_schema(pg, schema)
        out.write(
            f"round {round_}: COPY {copies[-1].seconds:.2f} s ({copies[-1].rate:,.0f} rows/s),"
            f" replay from bundle {replays[-1].seconds:.2f} s ({replays[-1].rate:,.0f} events/s,"
            f" {replays[-1].rate / copies[-1].rate:.2f}x COPY; {replays[-1].cpu or 0:.1f} s CPU"
            " in this process)\n"
        )
    return best(copies), best(replays)


def measure_grpc(out: TextIO, pg: str, url: str, rounds: int) -> tuple[Measured, Measured]:
    reads: list[Measured] = []
    replays: list[Measured] = []
    for round_ in range(1, rounds + 1):
        reads.append(ceilings.read_all(url))
        schema = fresh_schema("grpc")
        replays.append(replay_once(url, pg, schema))
        drop_schema(pg, schema)
        out.write(
            f"round {round_}: read_all {reads[-1].rate:,.0f} events/s, replay over gRPC"
            f" {replays[-1].rate:,.0f} events/s ({replays[-1].rate / reads[-1].rate:.2f}x;"
            f" {replays[-1].cpu or 0:.1f} s CPU in this process)\n"
        )
    return best(reads), best(replays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="in the bundle")
    parser.add_argument("--grpc-events", type=int, default=200_000, help="in the emulator")
    parser.add_argument("--rounds", type=int, default=2, help="ceiling and replay, best kept")
    parser.add_argument("--naive-sample", type=int, default=20_000, help="0 skips it")
    parser.add_argument("--skip-grpc", action="store_true", help="only the bundle replay")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = sys.stdout
    out.write(f"start: {load_average()}\n")
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as pg:
        started = time.perf_counter()
        bundle = Path(tmp) / "history.bundle"
        history_bundle(bundle, args.events)
        out.write(
            f"setup: bundle of {args.events:,} events written in "
            f"{time.perf_counter() - started:.1f} s ({bundle.stat().st_size / 1e6:.0f} MB)\n"
        )
        copy, from_bundle = measure_bundle(out, pg, bundle, args.rounds)
        limit = BUNDLE_SECONDS_PER_MILLION * args.events / 1_000_000
        out.write(
            f"ceiling: COPY of {copy.count:,} rows in {copy.seconds:.2f} s"
            f" = {copy.rate:,.0f} rows/s\n"
            f"replay from bundle: {from_bundle.count:,} events in {from_bundle.seconds:.2f} s"
            f" = {from_bundle.rate:,.0f} events/s (target <= {limit:.1f} s:"
            f" {'met' if from_bundle.seconds <= limit else 'NOT met'});"
            f" {against(from_bundle, copy, BUNDLE_TARGET)}\n"
        )

        if not args.skip_grpc:
            started = time.perf_counter()
            source = bundle
            if args.grpc_events != args.events:
                source = Path(tmp) / "grpc.bundle"
                history_bundle(source, args.grpc_events)
            with emulator_process(source) as esdb_url:
                out.write(
                    f"setup: emulator process loaded with {args.grpc_events:,} events in"
                    f" {time.perf_counter() - started:.1f} s (not measured)\n"
                )
                read, over_grpc = measure_grpc(out, pg, esdb_url, args.rounds)
            out.write(
                f"ceiling: read_all of {read.count:,} events, filtered, doing nothing:"
                f" {read.seconds:.2f} s = {read.rate:,.0f} events/s\n"
                f"replay over gRPC: {over_grpc.count:,} events in {over_grpc.seconds:.2f} s"
                f" = {over_grpc.rate:,.0f} events/s; {against(over_grpc, read, GRPC_TARGET)}\n"
            )

        if args.naive_sample > 0:
            sample = list(generate(min(args.naive_sample, args.events)))
            slow = naive(pg, fresh_schema("naive"), sample)
            out.write(
                f"naive replay (1 transaction per event, sample of {slow.count:,}):"
                f" {slow.rate:,.0f} events/s, scaled to {args.events:,}:"
                f" {args.events / slow.rate:.0f} s; from a bundle is"
                f" {from_bundle.rate / slow.rate:.1f}x faster\n"
            )
    out.write(f"end: {load_average()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bisect cost against a full replay of the same bundle, measured in the same run.

    python -m benchmarks.bisect_bench [--events 1000000] [--at 0.7] [--rounds 1]

Setup (not measured): an embedded PostgreSQL (or `DATABASE_URL`) and a bundle of `--events`
generated `user-created` events. Then, `--rounds` times: a full replay of the bundle into a fresh
schema (`usersvc replay`'s code, its checks and checksum included), and a bisect of the same
bundle with a planted projection bug: one specific event, at `--at` of the history, empties its
user's name. The check is an invariant over the whole table (`SELECT ... FROM "user" WHERE
"fullName" = ''`, a sequential scan each time: the usual shape of a bug's check), run after
every batch, in the narrow pass, and over the rest of the history to test the rule. Target: the
bisect takes at most 2.5x the replay. The best round of each is compared.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.ceilings import Measured, best, drop_schema
from benchmarks.replay_bench import fresh_schema, replay_once
from benchmarks.support import history_bundle, load_average, postgres
from repro.bisect import BisectRequest, Found, bisect
from repro.checks import SqlCheck
from repro.history import BundleSource
from usersvc.events import stream_name
from usersvc.records import StoredEvent
from worker.projection import BatchResult, Projection

TARGET = 2.5  # the bisect may take at most this many times the replay
EMPTY_NAMES = 'SELECT username, "fullName" FROM "user" WHERE "fullName" = \'\''


class PlantedBug(Projection):
    """The worker's projection, with a bug triggered by the events of one stream."""

    stream = stream_name("user0000000")

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> BatchResult:
        result = super().apply(conn, events)
        if any(event.stream == self.stream for event in events):
            conn.execute(
                sql.SQL("""UPDATE {} SET "fullName" = '' WHERE username = %s""").format(
                    self.model.users
                ),
                (self.stream.removeprefix("user-"),),
            )
        return result


def bisect_once(bundle: Path, pg_url: str, victim: str) -> tuple[Measured, Found]:
    PlantedBug.stream = stream_name(victim)
    started = time.perf_counter()
    source = BundleSource(bundle)
    outcome = bisect(
        source,
        BisectRequest(database_url=pg_url, check=SqlCheck(EMPTY_NAMES), projection=PlantedBug),
    )
    seconds = time.perf_counter() - started
    if not isinstance(outcome, Found) or outcome.culprit.event.stream != PlantedBug.stream:
        raise SystemExit(f"the bisect did not find the planted event: {outcome}")
    return Measured(outcome.cost.events, seconds), outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="in the bundle")
    parser.add_argument("--at", type=float, default=0.7, help="where the bug is (0 to 1)")
    parser.add_argument("--rounds", type=int, default=1, help="replay and bisect, best kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = sys.stdout
    out.write(f"start: {load_average()}\n")
    victim = f"user{min(args.events - 1, int(args.events * args.at)):07d}"
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as pg:
        started = time.perf_counter()
        bundle = Path(tmp) / "history.bundle"
        history_bundle(bundle, args.events)
        out.write(
            f"setup: bundle of {args.events:,} events written in"
            f" {time.perf_counter() - started:.1f} s (not measured); planted bug at {victim}\n"
        )
        replays: list[Measured] = []
        bisects: list[Measured] = []
        found: Found | None = None
        for round_ in range(1, args.rounds + 1):
            schema = fresh_schema("replay")
            replays.append(replay_once(bundle, pg, schema))
            drop_schema(pg, schema)
            measured, found = bisect_once(bundle, pg, victim)
            bisects.append(measured)
            cost = found.cost
            out.write(
                f"round {round_}: replay {replays[-1].seconds:.2f} s, bisect"
                f" {bisects[-1].seconds:.2f} s ({bisects[-1].seconds / replays[-1].seconds:.2f}x"
                f" the replay): {cost.events:,} events in {cost.batches} batches,"
                f" {cost.checks} checks, {cost.probes} probes re-applying {cost.reapplied:,}"
                " events\n"
            )
        assert found is not None
        replay, bisected = best(replays), best(bisects)
        ratio = bisected.seconds / replay.seconds
        culprit = found.culprit
        out.write(
            f"found: event {culprit.number:,} (position {culprit.event.commit_position},"
            f" {culprit.event.stream})\n"
            f"replay of the bundle: {replay.seconds:.2f} s ({replay.rate:,.0f} events/s)\n"
            f"bisect of the bundle: {bisected.seconds:.2f} s = {ratio:.2f}x the replay"
            f" (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})\n"
        )
    out.write(f"end: {load_average()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

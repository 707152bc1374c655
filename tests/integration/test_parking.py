"""Poison events on a real PostgreSQL: the pipeline parks a refused event's stream (with the rest
of it) and every other stream goes on; the limit halts; retry and skip operate the parked
streams (worker/parking.py, worker/parked.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from repro.bundle import write_bundle
from repro.history import BundleSource
from repro.replay import ReplayHalted, ReplayRequest, replay
from tests.fixtures.events import changed, created, malformed
from tests.fixtures.waiting import read_checkpoint
from usersvc.records import StoredEvent
from worker.parked import NotParked, ParkedStreams
from worker.parking import Parking, ParkingPolicy
from worker.pipeline import Committed, project
from worker.projection import BatchResult, Projection, ProjectionError
from worker.reader import Reader

NAME = "p"


def run(
    conn: psycopg.Connection[Any],
    events: list[StoredEvent],
    parking: Parking | None,
    projection: Projection,
    batch_size: int = 100,
) -> list[Committed]:
    seen: list[Committed] = []
    reader = Reader(iter(events), capacity=100, endless=False)
    try:
        project(
            conn,
            reader,
            projection,
            batch_size=batch_size,
            batch_wait=1,
            on_commit=seen.append,
            parking=parking,
        )
    finally:
        reader.close()
    return seen


def rows(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    found = conn.execute(
        sql.SQL('SELECT username, "fullName" FROM {}').format(sql.Identifier(schema, "user"))
    ).fetchall()
    return dict(found)


def stream_history(unique: str) -> tuple[list[StoredEvent], str]:
    """Good users a, b, d; user c's first event is refused, and c has one more event after it."""
    bad = f"c-{unique}"
    events = [
        created(101, f"a-{unique}"),
        created(102, f"b-{unique}"),
        malformed(103, bad),
        created(104, f"d-{unique}"),
        changed(105, bad, "Later", revision=1),
        created(106, f"e-{unique}"),
    ]
    return events, bad


def parking(attempts: int = 1, max_streams: int = 10, schema: str = "") -> Parking:
    return Parking(schema, NAME, ParkingPolicy(attempts=attempts, max_streams=max_streams))


def test_a_refused_event_parks_its_stream_and_every_other_stream_goes_on(
    pg_url: str, schema: str, unique: str
) -> None:
    events, bad = stream_history(unique)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        seen = run(conn, events, parking(schema=schema), Projection(schema, NAME), batch_size=3)
        found = rows(conn, schema)
        checkpoint = read_checkpoint(conn, schema, NAME)
        parked = ParkedStreams(conn, Projection(schema, NAME))
        streams = parked.streams()
        held = parked.events(f"user-{bad}")
    assert sorted(found) == sorted(f"{u}-{unique}" for u in "abde")
    assert checkpoint == 106
    assert [(s.stream, s.first_position, s.events) for s in streams] == [(f"user-{bad}", 103, 2)]
    assert "fullName" in streams[0].reason or "missing" in streams[0].reason
    assert [e.commit_position for e in held] == [103, 105]
    assert sum(c.parked for c in seen) == 2
    assert seen[-1].parked_streams == 1


def test_a_refusal_is_tried_again_before_it_is_parked(
    pg_url: str, schema: str, unique: str
) -> None:
    events, bad = stream_history(unique)
    policy = parking(attempts=2, schema=schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(ProjectionError) as first:
            run(conn, events, policy, Projection(schema, NAME))
        assert policy.retrying(first.value)
        assert read_checkpoint(conn, schema, NAME) == 102  # the halting rule, as without parking
        run(conn, [e for e in events if e.commit_position > 102], policy, Projection(schema, NAME))
        streams = ParkedStreams(conn, Projection(schema, NAME)).streams()
    assert [(s.stream, s.attempts) for s in streams] == [(f"user-{bad}", 2)]


def test_above_the_limit_of_parked_streams_the_pipeline_halts(
    pg_url: str, schema: str, unique: str
) -> None:
    events = [
        malformed(201, f"x-{unique}"),
        created(202, f"ok-{unique}"),
        malformed(203, f"y-{unique}"),
        created(204, f"late-{unique}"),
    ]
    policy = parking(max_streams=1, schema=schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(ProjectionError, match="commit position 203"):
            run(conn, events, policy, Projection(schema, NAME))
        assert not policy.retrying(ProjectionError(203, f"user-y-{unique}", "again"))
        found = rows(conn, schema)
        checkpoint = read_checkpoint(conn, schema, NAME)
        streams = ParkedStreams(conn, Projection(schema, NAME)).streams()
    assert sorted(found) == [f"ok-{unique}"]
    assert checkpoint == 202
    assert [s.stream for s in streams] == [f"user-x-{unique}"]


def test_without_parking_the_first_refusal_halts(pg_url: str, schema: str, unique: str) -> None:
    events, _ = stream_history(unique)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(ProjectionError, match="commit position 103"):
            run(conn, events, None, Projection(schema, NAME))
        assert read_checkpoint(conn, schema, NAME) == 102


class Refusing(Projection):
    """A projection with a bug: it refuses one username's events (a fix is the plain one)."""

    refused = ""

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> BatchResult:
        for event in events:
            if event.stream == f"user-{self.refused}":
                raise ProjectionError(event.commit_position, event.stream, "a bug")
        return super().apply(conn, events)


def test_retry_with_fixed_code_applies_the_parked_events_in_order_and_unparks(
    pg_url: str, schema: str, unique: str
) -> None:
    victim = f"v-{unique}"
    events = [
        created(301, victim, "First"),
        created(302, f"w-{unique}"),
        changed(303, victim, "Second", revision=1),
    ]
    buggy = Refusing(schema, NAME)
    buggy.refused = victim
    with psycopg.connect(pg_url, autocommit=True) as conn:
        run(conn, events, parking(schema=schema), buggy)
        assert sorted(rows(conn, schema)) == [f"w-{unique}"]
        parked = ParkedStreams(conn, Projection(schema, NAME))
        outcome = parked.retry(f"user-{victim}")
        assert (outcome.applied, outcome.still_parked) == (2, None)
        assert rows(conn, schema)[victim] == "Second"
        assert parked.streams() == []
        with pytest.raises(NotParked):
            parked.retry(f"user-{victim}")


def test_retry_with_the_same_code_keeps_the_stream_parked_and_counts_the_try(
    pg_url: str, schema: str, unique: str
) -> None:
    events, bad = stream_history(unique)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        run(conn, events, parking(schema=schema), Projection(schema, NAME))
        parked = ParkedStreams(conn, Projection(schema, NAME))
        outcome = parked.retry(f"user-{bad}")
        streams = parked.streams()
    assert outcome.applied == 0
    assert outcome.still_parked is not None
    assert outcome.still_parked.commit_position == 103
    assert [(s.first_position, s.attempts, s.events) for s in streams] == [(103, 2, 2)]


def test_skip_records_who_and_why_then_applies_the_rest_of_the_stream(
    pg_url: str, schema: str, unique: str
) -> None:
    bad = f"s-{unique}"
    events = [malformed(401, bad), created(402, bad, "Good one")]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        run(conn, events, parking(schema=schema), Projection(schema, NAME))
        parked = ParkedStreams(conn, Projection(schema, NAME))
        outcome = parked.skip(f"user-{bad}", by="alice", why="written by the old service")
        skipped = conn.execute(
            sql.SQL(
                "SELECT commit_position, skipped_by, skip_reason, parked_reason FROM {}"
            ).format(sql.Identifier(schema, "skipped_event"))
        ).fetchall()
        found = rows(conn, schema)
        streams = parked.streams()
    assert (outcome.skipped, outcome.applied, outcome.still_parked) == (1, 1, None)
    assert found == {bad: "Good one"}
    assert streams == []
    assert [(p, by, why) for p, by, why, _ in skipped] == [
        (401, "alice", "written by the old service")
    ]
    assert skipped[0][3]  # why it was parked, kept with it


def test_replay_parks_on_request_and_halts_by_default(
    pg_url: str, schema: str, unique: str, tmp_path: Path
) -> None:
    events, bad = stream_history(unique)
    bundle = tmp_path / "poisoned.bundle"
    write_bundle(bundle, events, {"source": "test"})
    target = f"{schema}_parked"
    request = ReplayRequest(target_url=pg_url, schema=target, checkpoint_name=NAME, batch_size=2)
    with pytest.raises(ReplayHalted, match="commit position 103"):
        replay(BundleSource(bundle), request)
    summary = replay(BundleSource(bundle), replace(request, park_up_to=5, force=True))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        found = rows(conn, target)
        streams = ParkedStreams(conn, Projection(target, NAME)).streams()
        (details,) = conn.execute(
            sql.SQL("SELECT details FROM {}").format(sql.Identifier(target, "replay_manifest"))
        ).fetchone() or (None,)
    assert sorted(found) == sorted(f"{u}-{unique}" for u in "abde")
    assert [(s.stream, s.events) for s in streams] == [(f"user-{bad}", 2)]
    assert summary.parked == 2
    assert details["parked"] == 2

"""The one pipeline (reader → projection → checkpoint, one transaction per batch) on a real
PostgreSQL, fed by in-memory sources, and its one halting rule, proved for the live worker and for
replay alike."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from esdbclient import RecordedEvent
from esdbclient.events import CaughtUp, Checkpoint
from psycopg import sql

from repro.bundle import write_bundle
from repro.history import BundleSource
from repro.replay import ReplayHalted, ReplayRequest, replay
from tests.fixtures.events import FakeSubscription, as_recorded, created, malformed
from tests.fixtures.waiting import read_checkpoint, wait_for_checkpoint
from usersvc.records import StoredEvent
from worker import subscription
from worker.pipeline import Committed, project
from worker.projection import Projection, ProjectionError
from worker.reader import Reader, SourceFailed


def live_reader(items: list[RecordedEvent], **kwargs: Any) -> Reader:
    fake = FakeSubscription(items, **kwargs)
    return Reader(subscription.items(fake), capacity=100, endless=True, cancel=fake.stop)


@contextmanager
def projecting(conn: Any, reader: Reader, projection: Projection) -> Iterator[list[Committed]]:
    """Run the pipeline in a thread as the worker does; on exit stop it and wait for it."""
    stop = threading.Event()
    seen: list[Committed] = []
    thread = threading.Thread(
        target=project,
        args=(conn, reader, projection),
        kwargs={"batch_size": 4, "batch_wait": 0.001, "stop": stop, "on_commit": seen.append},
    )
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=10)
        reader.close()
        assert not thread.is_alive()


def usernames(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute(
        sql.SQL("SELECT username FROM {} ORDER BY id").format(sql.Identifier(schema, "user"))
    ).fetchall()
    return [row[0] for row in rows]


def test_batches_are_committed_with_their_checkpoint_until_stopped(
    pg_url: str, schema: str, unique: str
) -> None:
    items = [as_recorded(created(p, f"pl-{unique}-{p}")) for p in range(1, 31)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with projecting(conn, live_reader(items), Projection(schema, "p")) as seen:
            wait_for_checkpoint(pg_url, schema, "p", 30, timeout=10)
        count = len(usernames(conn, schema))
    assert count == 30
    assert max(c.events for c in seen) == 4


def test_server_checkpoints_move_the_stored_checkpoint_past_other_events(
    pg_url: str, schema: str, unique: str
) -> None:
    items: list[RecordedEvent] = [
        as_recorded(created(5, f"cp-{unique}")),
        Checkpoint(900, 900),
        CaughtUp(),
    ]
    with (
        psycopg.connect(pg_url, autocommit=True) as conn,
        projecting(conn, live_reader(items), Projection(schema, "p")),
    ):
        assert wait_for_checkpoint(pg_url, schema, "p", 900, timeout=10) == 900


def test_a_finite_source_is_projected_to_its_end_and_returns_the_checkpoint(
    pg_url: str, schema: str, unique: str
) -> None:
    events = [created(p, f"fs-{unique}-{p}") for p in range(1, 11)]
    reader = Reader(iter(events), capacity=100, endless=False)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            position = project(conn, reader, Projection(schema, "p"), batch_size=3, batch_wait=9)
        finally:
            reader.close()
        count = len(usernames(conn, schema))
    assert position == 10
    assert count == 10


def test_a_source_that_fails_is_raised_not_swallowed(pg_url: str, schema: str) -> None:
    reader = live_reader([], then=ConnectionError("boom"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            with pytest.raises(SourceFailed, match="boom"):
                project(conn, reader, Projection(schema, "p"), batch_size=10, batch_wait=0.01)
        finally:
            reader.close()


# The halting rule, one test for both users of the pipeline: a batch of four events whose third
# cannot be projected. The two before it are committed with their checkpoint; the error names the
# third; nothing after it is applied.


def halt_live(pg_url: str, schema: str, events: list[StoredEvent], tmp_path: Path) -> str:
    reader = live_reader([as_recorded(e) for e in events])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            with pytest.raises(ProjectionError) as raised:
                project(conn, reader, Projection(schema, "p"), batch_size=10, batch_wait=1)
        finally:
            reader.close()
    return str(raised.value)


def halt_replay(pg_url: str, schema: str, events: list[StoredEvent], tmp_path: Path) -> str:
    bundle = tmp_path / "halt.bundle"
    write_bundle(bundle, events, {"source": "test"})
    target = f"{schema}_replay"
    with pytest.raises(ReplayHalted) as raised:
        replay(
            BundleSource(bundle),
            ReplayRequest(target_url=pg_url, schema=target, checkpoint_name="p", batch_size=10),
        )
    return str(raised.value)


@pytest.mark.parametrize("run", [halt_live, halt_replay], ids=["live worker", "replay"])
def test_a_failing_batch_commits_the_events_before_the_bad_one_then_halts_naming_it(
    pg_url: str,
    schema: str,
    unique: str,
    tmp_path: Path,
    run: Callable[[str, str, list[StoredEvent], Path], str],
) -> None:
    events = [
        created(101, f"h-{unique}-a"),
        created(102, f"h-{unique}-b"),
        malformed(103, f"h-{unique}-c"),
        created(104, f"h-{unique}-d"),
    ]
    message = run(pg_url, schema, events, tmp_path)
    target = schema if run is halt_live else f"{schema}_replay"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = usernames(conn, target)
        checkpoint = read_checkpoint(conn, target, "p")
    assert "commit position 103" in message
    assert rows == [f"h-{unique}-a", f"h-{unique}-b"]
    assert checkpoint == 102

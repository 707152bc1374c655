"""The projector loop on a real PostgreSQL, fed by an in-memory subscription (no server needed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from esdbclient import RecordedEvent
from esdbclient.events import CaughtUp, Checkpoint

from tests.fixtures.waiting import read_checkpoint, wait_for_checkpoint
from tests.integration.test_worker_projection import created
from tests.unit.test_worker_feed import FakeSubscription
from worker.feed import SubscriptionEnded
from worker.projection import Projection, ProjectionError
from worker.projector import Projector


def as_recorded(position: int, username: str, data: bytes | None = None) -> RecordedEvent:
    event = created(position, username)
    return RecordedEvent(
        type=event.type,
        data=event.data if data is None else data,
        metadata=event.metadata,
        content_type=event.content_type,
        id=event.event_id,
        stream_name=event.stream,
        stream_position=0,
        commit_position=position,
        prepare_position=position,
        recorded_at=event.recorded_at,
    )


class Recorder:
    """Hands out a FakeSubscription and remembers where each one started."""

    def __init__(self, items: list[RecordedEvent], **kwargs: Any) -> None:
        self.items = items
        self.kwargs = kwargs
        self.starts: list[int | None] = []

    def __call__(self, position: int | None) -> FakeSubscription:
        self.starts.append(position)
        after = [i for i in self.items if position is None or (i.commit_position or 0) > position]
        return FakeSubscription(after, **self.kwargs)


@contextmanager
def running(projector: Projector, conn: Any, subscribe: Recorder) -> Iterator[None]:
    """Run the projector in a thread; on exit stop it and wait for it (before `conn` closes)."""
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(conn, subscribe, stop))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_the_projector_resumes_after_the_stored_checkpoint(
    pg_url: str, schema: str, unique: str
) -> None:
    projection = Projection(schema, "p")
    items = [as_recorded(p, f"pj-{unique}-{p}") for p in range(1, 31)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with conn.transaction():
            projection.apply(conn, [created(10, f"pj-{unique}-10")])
        subscribe = Recorder(items)
        with running(Projector(projection, batch_size=4, batch_wait=0.001), conn, subscribe):
            wait_for_checkpoint(pg_url, schema, "p", 30, timeout=10)
        count = conn.execute(f'SELECT count(*) FROM {schema}."user"').fetchone()
    assert subscribe.starts == [10]
    assert count == (21,)


def test_server_checkpoints_move_the_stored_checkpoint_past_other_events(
    pg_url: str, schema: str, unique: str
) -> None:
    items: list[RecordedEvent] = [as_recorded(5, f"cp-{unique}"), Checkpoint(900, 900), CaughtUp()]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        projector = Projector(Projection(schema, "p"), batch_size=10, batch_wait=0.001)
        with running(projector, conn, Recorder(items)):
            assert wait_for_checkpoint(pg_url, schema, "p", 900, timeout=10) == 900


def test_a_malformed_event_raises_and_commits_nothing_of_its_batch(
    pg_url: str, schema: str, unique: str
) -> None:
    items = [as_recorded(1, f"mf-{unique}-a"), as_recorded(2, f"mf-{unique}-b", b"{}")]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        projector = Projector(Projection(schema, "p"), batch_size=10, batch_wait=0.2)
        with pytest.raises(ProjectionError, match="commit position 2"):
            projector.run(conn, Recorder(items), threading.Event())
        assert read_checkpoint(conn, schema, "p") in (None, 1)


def test_a_subscription_that_fails_is_raised_not_swallowed(pg_url: str, schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        projector = Projector(Projection(schema, "p"), batch_size=10, batch_wait=0.001)
        with pytest.raises(SubscriptionEnded, match="boom"):
            projector.run(conn, Recorder([], then=ConnectionError("boom")), threading.Event())

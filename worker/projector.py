"""One live session of the worker: subscribe from the stored checkpoint and project in batches.

`Projector.run` returns when `stop` is set (after committing the batch in flight) and raises on
anything else: a lost connection, an ended subscription, a `ProjectionError`. The runner decides
what to do with each (reconnect with backoff, or stop loudly).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from worker.feed import Batch, Feed, Subscription
from worker.projection import Projection

log = logging.getLogger(__name__)

# How often a waiting projector looks at its stop event.
STOP_POLL = 0.1
PROGRESS_EVERY = 10.0

Subscribe = Callable[[int | None], Subscription]


class Projector:
    def __init__(
        self,
        projection: Projection,
        *,
        batch_size: int,
        batch_wait: float,
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.projection = projection
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.on_progress = on_progress
        self.applied = 0
        self.skipped = 0

    def run(
        self, conn: psycopg.Connection[Any], subscribe: Subscribe, stop: threading.Event
    ) -> None:
        """Project until `stop` is set. `conn` must be in autocommit mode (one transaction per
        batch is opened here)."""
        position = self.projection.checkpoint(conn)
        log.info(
            "subscribing to $all from %s",
            "the start" if position is None else f"after commit position {position}",
        )
        feed = Feed(subscribe(position), capacity=self.batch_size * 4)
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                batch = feed.next_batch(self.batch_size, self.batch_wait, timeout=STOP_POLL)
                if batch is None:
                    continue
                position = self._commit(conn, batch, position)
                if batch.caught_up:
                    log.info("caught up at commit position %s", position)
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY:
                    log.info(
                        "projected %d events (%d skipped), checkpoint %s",
                        self.applied,
                        self.skipped,
                        position,
                    )
                    last_report = now
        finally:
            feed.close()
        log.info("stopped at commit position %s", position)

    def _commit(
        self, conn: psycopg.Connection[Any], batch: Batch, stored: int | None
    ) -> int | None:
        position = stored
        advance = batch.checkpoint
        if advance is not None and stored is not None and advance <= stored:
            advance = None
        if not batch.events and advance is None:
            return stored
        with conn.transaction():
            if batch.events:
                result = self.projection.apply(conn, batch.events)
                self.applied += result.applied
                self.skipped += result.skipped
                position = result.last_position
            if advance is not None and (position is None or advance > position):
                self.projection.advance(conn, advance)
                position = advance
        if position != stored:
            log.debug(
                "committed %d events, checkpoint %s",
                len(batch.events),
                position,
            )
            self.on_progress()
        return position

"""Poison events: an event the projection cannot apply is set aside with the rest of its stream,
and every other stream goes on.

The rule (the pipeline applies it inside each batch's transaction):
- An event the projection refuses (`ProjectionError`) is tried `attempts` times: before the last
  try the pipeline halts as it always did and the live worker starts again after a backoff; at
  the last, the event is *parked*.
- Parking a stream records the event and its reason in `parked_stream`/`parked_event`; every
  later event of that stream is parked behind it, in order, until an operator retries or skips
  (`worker.parked`). The rows are written in the transaction that moves the checkpoint past them,
  so nothing is lost between the two and nothing is parked twice.
- Above `max_streams` parked streams the pipeline halts instead, as without parking: many
  poisoned streams at once are a bug to fix, not events to set aside.

Each batch reads the parked streams with `FOR KEY SHARE`, so an operator's retry or skip (which
locks the stream's row) waits for the batch in flight, and the batch after it sees the result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from usersvc.readmodel import ReadModel
from usersvc.records import StoredEvent
from worker.projection import ProjectionError

log = logging.getLogger(__name__)

# The columns of an event in parked_event and skipped_event, in StoredEvent's field order.
EVENT_COLUMNS = (
    "commit_position",
    "stream",
    "revision",
    "event_id",
    "type",
    "data",
    "metadata",
    "content_type",
    "recorded_at",
)


@dataclass(frozen=True, slots=True)
class ParkingPolicy:
    attempts: int  # tries of a refused event before it is parked (1: at the first refusal)
    max_streams: int  # parked streams at most; one more halts the pipeline


def event_row(projection: str, event: StoredEvent) -> tuple[Any, ...]:
    return (
        projection,
        event.commit_position,
        event.stream,
        event.revision,
        event.event_id,
        event.type,
        event.data,
        event.metadata,
        event.content_type,
        event.recorded_at,
    )


def insert_event(table: sql.Identifier, *extra: str) -> sql.Composed:
    """`INSERT INTO table (projection, <event columns>, *extra) VALUES (...)`."""
    columns = ("projection", *EVENT_COLUMNS, *extra)
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        table,
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )


class Parking:
    """The pipeline's side of parking, for one projection (checkpoint name) in one schema."""

    def __init__(self, schema: str, projection: str, policy: ParkingPolicy) -> None:
        self.projection = projection
        self.policy = policy
        model = ReadModel(schema)
        self._failures: dict[int, int] = {}
        self.count = 0  # streams parked, as of the last batch
        self._select_streams = sql.SQL(
            "SELECT stream FROM {} WHERE projection = %s FOR KEY SHARE"
        ).format(model.parked_streams)
        self._insert_stream = sql.SQL(
            "INSERT INTO {} (projection, stream, first_position, reason, attempts)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        ).format(model.parked_streams)
        self._insert_event = insert_event(model.parked_events)

    def streams(self, conn: psycopg.Connection[Any]) -> set[str]:
        """The parked streams, locked against a retry or skip until the transaction ends."""
        streams = {row[0] for row in conn.execute(self._select_streams, (self.projection,))}
        self.count = len(streams)
        return streams

    def should_park(self, refused: ProjectionError, parked_streams: int) -> bool:
        """Whether to park `refused`'s stream now (else the pipeline halts on it)."""
        tries = self._failures.get(refused.commit_position, 0) + 1
        self._failures[refused.commit_position] = tries
        if tries < self.policy.attempts:
            log.warning(
                "cannot project the event at commit position %d of stream %s (attempt %d of %d):"
                " %s",
                refused.commit_position,
                refused.stream,
                tries,
                self.policy.attempts,
                refused.reason,
                extra=_fields(refused, tries),
            )
            return False
        if parked_streams >= self.policy.max_streams:
            log.critical(
                "not parking stream %s: %d streams are parked already, the limit"
                " (WORKER_MAX_PARKED_STREAMS); halting",
                refused.stream,
                parked_streams,
                extra=_fields(refused, tries),
            )
            return False
        return True

    def retrying(self, refused: ProjectionError) -> bool:
        """After a halt on `refused`: whether it has tries left (the worker backs off and
        starts again) rather than being a halt for good."""
        return self._failures.get(refused.commit_position, 0) < self.policy.attempts

    def park(
        self,
        conn: psycopg.Connection[Any],
        refused: Sequence[ProjectionError],
        held: Sequence[StoredEvent],
    ) -> None:
        """Record newly parked streams (`refused`, one per stream) and the events `held` behind
        any parked stream, in the caller's transaction."""
        tries = [self._failures.pop(exc.commit_position, 1) for exc in refused]
        self.count += len(refused)
        with conn.pipeline(), conn.cursor() as cur:
            for exc, tried in zip(refused, tries, strict=True):
                cur.execute(
                    self._insert_stream,
                    (self.projection, exc.stream, exc.commit_position, exc.reason, tried),
                )
            cur.executemany(self._insert_event, [event_row(self.projection, e) for e in held])
        for exc, tried in zip(refused, tries, strict=True):
            log.warning(
                "parked stream %s at commit position %d: %s; its later events wait behind it"
                " (usersvc parked show %s)",
                exc.stream,
                exc.commit_position,
                exc.reason,
                exc.stream,
                extra=_fields(exc, tried),
            )


def _fields(refused: ProjectionError, tries: int) -> dict[str, Any]:
    return {
        "stream": refused.stream,
        "commit_position": refused.commit_position,
        "reason": refused.reason,
        "attempt": tries,
    }

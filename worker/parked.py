"""What an operator does with parked streams (`usersvc parked`): list, show, retry, skip.

- retry: re-applies the stream's parked events in order with the current code. The events
  before the first one still refused are applied and leave the table; the stream stays parked
  from that one on (its reason and tries updated). All applied: the stream is no longer parked,
  and the worker applies its new events as they come.
- skip: sets the stream's first parked event aside for good in `skipped_event`, with who, when
  and why, then retries the rest.
Each runs in one transaction that locks the stream's row, so it waits for the worker's batch in
flight and the worker's next batch sees the outcome (`worker.parking`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from usersvc.readmodel import ReadModel
from usersvc.records import StoredEvent
from worker.parking import EVENT_COLUMNS, event_row, insert_event
from worker.projection import Projection, ProjectionError


class NotParked(LookupError):
    """The stream is not parked (never was, or was retried or skipped meanwhile)."""


@dataclass(frozen=True, slots=True)
class ParkedStream:
    stream: str
    first_position: int
    reason: str
    attempts: int
    parked_at: datetime
    updated_at: datetime
    events: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a retry or skip did: events applied, and the refusal the stream is still parked at."""

    stream: str
    applied: int
    still_parked: ProjectionError | None
    skipped: int = 0


class ParkedStreams:
    """The parked streams of one projection (its checkpoint name) in one schema."""

    def __init__(self, conn: psycopg.Connection[Any], projection: Projection) -> None:
        self.conn = conn
        self.projection = projection
        self.name = projection.checkpoint_name
        model = ReadModel(projection.schema)
        streams, events = model.parked_streams, model.parked_events
        self._list = sql.SQL(
            "SELECT s.stream, s.first_position, s.reason, s.attempts, s.parked_at, s.updated_at,"
            " (SELECT count(*) FROM {events} AS e"
            "  WHERE e.projection = s.projection AND e.stream = s.stream) AS events"
            " FROM {streams} AS s WHERE s.projection = %s {only} ORDER BY s.parked_at, s.stream"
        )
        self._list_all = self._list.format(events=events, streams=streams, only=sql.SQL(""))
        self._list_one = self._list.format(
            events=events, streams=streams, only=sql.SQL("AND s.stream = %s")
        )
        self._lock = sql.SQL(
            "SELECT reason FROM {} WHERE projection = %s AND stream = %s FOR UPDATE"
        ).format(streams)
        self._events = sql.SQL(
            "SELECT {} FROM {} WHERE projection = %s AND stream = %s ORDER BY commit_position"
        ).format(sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)), events)
        self._forget_before = sql.SQL(
            "DELETE FROM {} WHERE projection = %s AND stream = %s AND commit_position < %s"
        ).format(events)
        self._still_parked = sql.SQL(
            "UPDATE {} SET first_position = %s, reason = %s, updated_at = now(),"
            " attempts = CASE WHEN first_position = %s THEN attempts + 1 ELSE 1 END"
            " WHERE projection = %s AND stream = %s"
        ).format(streams)
        self._unpark = sql.SQL("DELETE FROM {} WHERE projection = %s AND stream = %s").format(
            streams
        )
        self._skip = insert_event(
            model.skipped_events, "parked_reason", "skipped_by", "skip_reason"
        )

    def streams(self, stream: str | None = None) -> list[ParkedStream]:
        query, params = (
            (self._list_all, (self.name,))
            if stream is None
            else (self._list_one, (self.name, stream))
        )
        with self.conn.cursor(row_factory=dict_row) as cur:
            return [ParkedStream(**row) for row in cur.execute(query, params)]

    def events(self, stream: str) -> list[StoredEvent]:
        rows = self.conn.execute(self._events, (self.name, stream)).fetchall()
        return [_stored(row) for row in rows]

    def retry(self, stream: str) -> Outcome:
        with self.conn.transaction():
            self._lock_stream(stream)
            return self._reapply(stream, self.events(stream))

    def skip(self, stream: str, *, by: str, why: str) -> Outcome:
        """Set the stream's first parked event aside for good, then retry the rest."""
        with self.conn.transaction():
            reason = self._lock_stream(stream)
            first, *rest = self.events(stream)
            self.conn.execute(self._skip, (*event_row(self.name, first), reason, by, why))
            self.conn.execute(self._forget_before, (self.name, stream, first.commit_position + 1))
            outcome = self._reapply(stream, rest)
        return Outcome(stream, outcome.applied, outcome.still_parked, skipped=1)

    def _lock_stream(self, stream: str) -> str:
        row = self.conn.execute(self._lock, (self.name, stream)).fetchone()
        if row is None:
            raise NotParked(stream)
        return str(row[0])

    def _reapply(self, stream: str, events: list[StoredEvent]) -> Outcome:
        try:
            self.projection.apply(self.conn, events)
        except ProjectionError as exc:
            # Nothing was written: apply what lies before the event refused again.
            before = [e for e in events if e.commit_position < exc.commit_position]
            self.projection.apply(self.conn, before)
            self.conn.execute(self._forget_before, (self.name, stream, exc.commit_position))
            self.conn.execute(
                self._still_parked,
                (exc.commit_position, exc.reason, exc.commit_position, self.name, stream),
            )
            return Outcome(stream, len(before), exc)
        self.conn.execute(self._unpark, (self.name, stream))
        return Outcome(stream, len(events), None)


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    position, stream, revision, event_id, type_, data, metadata, content_type, recorded = row
    return StoredEvent(
        commit_position=position,
        stream=stream,
        revision=revision,
        event_id=event_id,
        type=type_,
        data=bytes(data),
        metadata=bytes(metadata),
        content_type=content_type,
        recorded_at=recorded,
    )

"""The read-model projection: `user-created` events into `"user"`, plus the checkpoint row.

The same code runs live (the worker) and in replay. `apply` works inside the caller's open
transaction and never commits: the rows and the checkpoint become visible together or not at all.
A batch costs one round trip however large it is: the events are decoded and checked in Python
(the contract codec), then sent as one JSON array per column to one `INSERT ... SELECT` with the
checkpoint upsert and a `NOTIFY` in the same pipeline.

Rules:
- Events come in `$all` order. The first `user-created` for a username wins; a re-applied or
  duplicate one changes nothing (`ON CONFLICT (username) DO NOTHING`).
- An event type other than `user-created` is skipped by design and counted.
- A malformed `user-created` raises `ProjectionError` naming its commit position and stream, before
  anything of the batch is written. It is never skipped.
- The checkpoint never moves backwards (re-applying old events leaves it where it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg import pq, sql

from usersvc.events import USER_CREATED, MalformedEvent, decode_user_created, username_from_stream
from usersvc.readmodel import NOTIFY_CHANNEL, ReadModel, notify_payload
from usersvc.records import StoredEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class ProjectionError(RuntimeError):
    """An event of a known type cannot be projected; the worker must stop, not skip it."""

    def __init__(self, commit_position: int, stream: str, reason: str) -> None:
        super().__init__(
            f"cannot project event at commit position {commit_position} "
            f"in stream {stream!r}: {reason}"
        )
        self.commit_position = commit_position
        self.stream = stream
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BatchResult:
    applied: int
    skipped: int
    last_position: int | None


@dataclass(slots=True)
class _Rows:
    usernames: list[str]
    created_at: list[int]  # microseconds since the Unix epoch (much cheaper to send than datetimes)
    full_names: list[str]
    event_ids: list[UUID]
    positions: list[int]


def _decode(events: Sequence[StoredEvent]) -> tuple[_Rows, int]:
    rows = _Rows([], [], [], [], [])
    skipped = 0
    for event in events:
        if event.type != USER_CREATED:
            skipped += 1
            continue
        try:
            user = decode_user_created(event.data)
        except MalformedEvent as exc:
            raise ProjectionError(event.commit_position, event.stream, str(exc)) from None
        if username_from_stream(event.stream) != user.username:
            raise ProjectionError(
                event.commit_position,
                event.stream,
                f"username {user.username!r} does not match the stream name",
            )
        rows.usernames.append(user.username)
        rows.created_at.append((user.opened_at - _EPOCH) // _MICROSECOND)
        rows.full_names.append(user.full_name)
        rows.event_ids.append(event.event_id)
        rows.positions.append(event.commit_position)
    return rows, skipped


class Projection:
    """Projects events into `<schema>."user"` and keeps the checkpoint row `checkpoint_name`."""

    def __init__(self, schema: str, checkpoint_name: str) -> None:
        self.schema = schema
        self.checkpoint_name = checkpoint_name
        self.model = ReadModel(schema)
        # Each column travels as one JSON array (orjson writes it in C; PostgreSQL parses it in C),
        # several times cheaper than psycopg's per-element array dumping. ROWS FROM zips the
        # arrays; ORDER BY keeps ids in $all order and makes the first of two events for one
        # username the one that wins.
        self._insert = sql.SQL(
            "INSERT INTO {table} ({columns})"
            " SELECT u, 'epoch'::timestamptz + c::bigint * interval '1 microsecond', f, e::uuid,"
            " p::bigint FROM ROWS FROM (json_array_elements_text(%s::json),"
            " json_array_elements_text(%s::json), json_array_elements_text(%s::json),"
            " json_array_elements_text(%s::json), json_array_elements_text(%s::json))"
            " AS t(u, c, f, e, p) ORDER BY p::bigint"
            " ON CONFLICT (username) DO NOTHING"
        ).format(table=self.model.users, columns=self.model.user_columns)

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> BatchResult:
        """Apply `events` (in `$all` order) and move the checkpoint to the last one's position.

        Runs in the caller's open transaction and does not commit. Raises `ProjectionError` for a
        malformed `user-created` before writing anything.
        """
        if not events:
            return BatchResult(applied=0, skipped=0, last_position=None)
        rows, skipped = _decode(events)
        last = events[-1].commit_position
        _require_transaction(conn)
        with conn.pipeline(), conn.cursor() as cur:
            if rows.usernames:
                cur.execute(
                    self._insert,
                    [
                        orjson.dumps(column).decode()
                        for column in (
                            rows.usernames,
                            rows.created_at,
                            rows.full_names,
                            rows.event_ids,
                            rows.positions,
                        )
                    ],
                )
            self._send_checkpoint(cur, last)
        return BatchResult(applied=len(rows.usernames), skipped=skipped, last_position=last)

    def advance(self, conn: psycopg.Connection[Any], position: int) -> None:
        """Move the checkpoint to `position` with no events (the server's filtered checkpoints:
        nothing of ours lies before it). Runs in the caller's open transaction."""
        _require_transaction(conn)
        with conn.pipeline(), conn.cursor() as cur:
            self._send_checkpoint(cur, position)

    def checkpoint(self, conn: psycopg.Connection[Any]) -> int | None:
        """The stored commit position of the last event applied, or None before the first."""
        row = conn.execute(self.model.select_checkpoint, (self.checkpoint_name,)).fetchone()
        return None if row is None else int(row[0])

    def _send_checkpoint(self, cur: psycopg.Cursor[Any], position: int) -> None:
        cur.execute(self.model.move_checkpoint, (self.checkpoint_name, position))
        cur.execute(
            "SELECT pg_notify(%s, %s)",
            (NOTIFY_CHANNEL, notify_payload(self.schema, self.checkpoint_name, position)),
        )


def _require_transaction(conn: psycopg.Connection[Any]) -> None:
    if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        raise psycopg.ProgrammingError(
            "Projection needs an open transaction (use conn.transaction() or autocommit=False)"
        )

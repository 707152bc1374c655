"""The read-model projection: a user's events into `"user"`, plus the checkpoint row.

The same code runs live (the worker) and in replay, through the same pipeline. `apply` works
inside the caller's open transaction and never commits: the rows and the checkpoint become visible
together or not at all. A batch costs one round trip however large it is: the events are decoded,
checked and folded per user into net changes in Python (`worker.changes`), then sent as one JSON
array per column to at most three statements (delete, update, insert, in that order) with the
checkpoint upsert and a `NOTIFY`, in one pipeline.

Rules:
- Events come in `$all` order and follow the lifecycle of `usersvc.lifecycle`: a deletion removes
  the row, a `user-created` after it creates the row again, a change sets the full name; the first
  `user-created` of a live user wins.
- Idempotent under re-delivery: each statement applies only above the row's stored revision.
- An event type that is not a user's is skipped by design and counted.
- A malformed event of a known type (or one whose username is not its stream's) raises
  `ProjectionError` naming its commit position and stream, before anything of the batch is
  written. It is never skipped.
- The checkpoint never moves backwards (re-applying old events leaves it where it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import pq, sql

from usersvc.readmodel import NOTIFY_CHANNEL, ReadModel, notify_payload
from usersvc.records import StoredEvent
from worker.changes import ChangeError, changes_of


def _elements(count: int) -> sql.Composable:
    """ROWS FROM over `count` JSON array parameters: zips them into rows, in C on both sides
    (several times cheaper than psycopg's per-element array parameters)."""
    return sql.SQL("ROWS FROM ({})").format(
        sql.SQL(", ").join([sql.SQL("json_array_elements_text(%s::json)")] * count)
    )


def _json(*columns: Sequence[Any]) -> list[str]:
    return [orjson.dumps(column).decode() for column in columns]


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


class Projection:
    """Projects events into `<schema>."user"` and keeps the checkpoint row `checkpoint_name`."""

    def __init__(self, schema: str, checkpoint_name: str) -> None:
        self.schema = schema
        self.checkpoint_name = checkpoint_name
        self.model = ReadModel(schema)
        table = self.model.users
        # Rows whose revision is below the deletion's: a user's older lives.
        self._delete = sql.SQL(
            "DELETE FROM {table} AS t USING {rows} AS d(u, r)"
            " WHERE t.username = d.u AND t.revision < d.r::bigint"
        ).format(table=table, rows=_elements(2))
        # What a live user's batch changed: the full name (NULL keeps it) and the revision.
        self._update = sql.SQL(
            'UPDATE {table} AS t SET "fullName" = coalesce(d.f, t."fullName"),'
            ' "eventId" = d.e::uuid, "commitPosition" = d.p::bigint, revision = d.r::bigint'
            " FROM {rows} AS d(u, f, e, p, r)"
            " WHERE t.username = d.u AND t.revision < d.r::bigint"
        ).format(table=table, rows=_elements(5))
        # A new life, ids in the order of the user-created events; a user who still has a live
        # row (and was not updated) keeps it and takes only the revision.
        self._insert = sql.SQL(
            "INSERT INTO {table} ({columns})"
            " SELECT u, 'epoch'::timestamptz + c::bigint * interval '1 microsecond', f, e::uuid,"
            " p::bigint, r::bigint FROM {rows} AS d(u, c, f, e, p, r, o) ORDER BY o::bigint"
            ' ON CONFLICT (username) DO UPDATE SET "eventId" = EXCLUDED."eventId",'
            ' "commitPosition" = EXCLUDED."commitPosition", revision = EXCLUDED.revision'
            " WHERE t.revision < EXCLUDED.revision"
        ).format(
            table=sql.SQL("{} AS t").format(table),
            columns=self.model.user_columns,
            rows=_elements(7),
        )

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> BatchResult:
        """Apply `events` (in `$all` order) and move the checkpoint to the last one's position.

        Runs in the caller's open transaction and does not commit. Raises `ProjectionError` for a
        malformed `user-created` before writing anything.
        """
        if not events:
            return BatchResult(applied=0, skipped=0, last_position=None)
        try:
            changes = changes_of(events)
        except ChangeError as exc:
            raise ProjectionError(exc.event.commit_position, exc.event.stream, str(exc)) from None
        last = events[-1].commit_position
        _require_transaction(conn)
        with conn.pipeline(), conn.cursor() as cur:
            deletes, inserts, updates = changes.deletes, changes.inserts, changes.updates
            if deletes.usernames:
                cur.execute(self._delete, _json(deletes.usernames, deletes.revisions))
            if updates.usernames:
                cur.execute(
                    self._update,
                    _json(
                        updates.usernames,
                        updates.full_names,
                        updates.event_ids,
                        updates.positions,
                        updates.revisions,
                    ),
                )
            if inserts.usernames:
                cur.execute(
                    self._insert,
                    _json(
                        inserts.usernames,
                        inserts.created_at,
                        inserts.full_names,
                        inserts.event_ids,
                        inserts.positions,
                        inserts.revisions,
                        inserts.created_positions,
                    ),
                )
            self._send_checkpoint(cur, last)
        return BatchResult(applied=changes.applied, skipped=changes.skipped, last_position=last)

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

"""The PostgreSQL read model's names and shared queries: the one place that spells them.

The tables are created by `migrations/`; the service reads them, the worker and the offline tools
write them. Everything here is a name or a `psycopg.sql` composition for one schema: no I/O.

- `"user"`: the original table (`id`, `username`, `"createdAt"`, `"fullName"`) plus the last event
  applied to each row (`"eventId"`, `"commitPosition"`, and its stream `revision`).
- `checkpoint`: one row per projector name, the `$all` commit position of the last event applied,
  moved in the same transaction as the rows.
- `replay_manifest`: what a replay built and from where.
- `parked_stream`, `parked_event`: streams set aside at an event the projection cannot apply, and
  their events from that one on; `skipped_event`: events an operator chose never to apply, with
  who and why (see `worker.parking`).
- Every transaction that moves a checkpoint sends `NOTIFY usersvc_checkpoint` with the payload
  `<schema>:<checkpoint name>:<commit position>`, so readers wait without polling.
"""

from __future__ import annotations

from psycopg import sql

USER_TABLE = "user"
CHECKPOINT_TABLE = "checkpoint"
MANIFEST_TABLE = "replay_manifest"
MIGRATIONS_TABLE = "schema_migrations"
PARKED_STREAM_TABLE = "parked_stream"
PARKED_EVENT_TABLE = "parked_event"
SKIPPED_EVENT_TABLE = "skipped_event"
# The read model's own columns, in the original's order; `id` is a serial of the database.
USER_COLUMNS = ("username", "createdAt", "fullName", "eventId", "commitPosition", "revision")
NOTIFY_CHANNEL = "usersvc_checkpoint"


def notify_payload(schema: str, checkpoint_name: str, position: int) -> str:
    return f"{schema}:{checkpoint_name}:{position}"


def notify_prefix(schema: str, checkpoint_name: str) -> str:
    """What every payload of this checkpoint starts with; the position follows it."""
    return notify_payload(schema, checkpoint_name, 0).removesuffix("0")


class ReadModel:
    """The read model's tables and shared queries in one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.users = sql.Identifier(schema, USER_TABLE)
        self.checkpoints = sql.Identifier(schema, CHECKPOINT_TABLE)
        self.manifest = sql.Identifier(schema, MANIFEST_TABLE)
        self.migrations = sql.Identifier(schema, MIGRATIONS_TABLE)
        self.parked_streams = sql.Identifier(schema, PARKED_STREAM_TABLE)
        self.parked_events = sql.Identifier(schema, PARKED_EVENT_TABLE)
        self.skipped_events = sql.Identifier(schema, SKIPPED_EVENT_TABLE)
        self.user_columns = sql.SQL(", ").join(sql.Identifier(c) for c in USER_COLUMNS)
        # Parameters: username. Columns: id, username, createdAt, fullName, revision.
        self.select_user = sql.SQL(
            'SELECT id, username, "createdAt", "fullName", revision FROM {} WHERE username = %s'
        ).format(self.users)
        # Parameters: checkpoint name. Columns: commit_position, updated_at.
        self.select_checkpoint = sql.SQL(
            "SELECT commit_position, updated_at FROM {} WHERE name = %s"
        ).format(self.checkpoints)
        # Parameters: checkpoint name, position. Never moves a checkpoint backwards.
        self.move_checkpoint = sql.SQL(
            "INSERT INTO {} AS c (name, commit_position, updated_at) VALUES (%s, %s, now())"
            " ON CONFLICT (name) DO UPDATE SET"
            " commit_position = GREATEST(c.commit_position, EXCLUDED.commit_position),"
            " updated_at = now()"
        ).format(self.checkpoints)
        # Parameters: projection (checkpoint) name. Columns: count.
        self.count_parked = sql.SQL("SELECT count(*) FROM {} WHERE projection = %s").format(
            self.parked_streams
        )
        self.listen = sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL))

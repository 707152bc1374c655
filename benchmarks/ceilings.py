"""Ceilings measured in the same run as a benchmark: what the worker or a replay could reach if
its own work cost nothing.

- Reading: esdbclient reading `$all` filtered as the worker filters (stream names `user-.*`,
  matched by the server), doing nothing with the events; as `read_all` (what a replay over gRPC
  does) and as a catch-up subscription with the worker's options (what the worker does).
- Writing: PostgreSQL's COPY of the read model's rows (`usersvc.readmodel.USER_COLUMNS`), encoded
  beforehand (not timed) in COPY's binary format, into the `"user"` table of a freshly migrated
  schema, committed.

They talk to esdbclient and psycopg directly, so that they do not move when the worker's or the
replay's code does.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from esdbclient import CaughtUp, Checkpoint, EventStoreDBClient
from psycopg import sql

from usersvc.events import STREAM_PREFIX, USER_CREATED, decode_user_created
from usersvc.readmodel import USER_COLUMNS, USER_TABLE
from usersvc.records import StoredEvent
from worker.migrator import migrate

# As the worker subscribes (worker/subscription.py and its runner): the server matches the
# stream name against `user-.*`, sends a checkpoint every 500 x 10 events it scans and says
# when the subscription has caught up.
FILTER_INCLUDE = (STREAM_PREFIX + ".*",)
WINDOW_SIZE = 500
CHECKPOINT_INTERVAL_MULTIPLIER = 10
COPY_BLOCK = 1 << 20
# The columns copy_payload encodes, in this order: text, timestamptz, text, uuid, bigint, bigint.
COPIED_COLUMNS = ("username", "createdAt", "fullName", "eventId", "commitPosition", "revision")
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PG_EPOCH_MICROS = 946_684_800_000_000  # PostgreSQL's epoch, 2000-01-01, in µs since the Unix one


@dataclass(frozen=True)
class Measured:
    """`count` things done in `seconds`; `cpu`: the CPU seconds of this process meanwhile (all
    its threads), when measured."""

    count: int
    seconds: float
    cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def read_all(esdb_url: str) -> Measured:
    """esdbclient's `read_all` of every matching event, from connecting to the last one."""
    started = time.perf_counter()
    client = EventStoreDBClient(esdb_url)
    try:
        events = client.read_all(filter_include=FILTER_INCLUDE, filter_by_stream_name=True)
        count = sum(1 for _ in events)
        return Measured(count, time.perf_counter() - started)
    finally:
        client.close()


def catch_up(esdb_url: str) -> Measured:
    """A catch-up subscription with the worker's filter and options, from connecting until the
    server says it has caught up; only events are counted (not checkpoints)."""
    started = time.perf_counter()
    client = EventStoreDBClient(esdb_url)
    count = 0
    try:
        subscription = client.subscribe_to_all(
            filter_include=FILTER_INCLUDE,
            filter_by_stream_name=True,
            include_checkpoints=True,
            include_caught_up=True,
            window_size=WINDOW_SIZE,
            checkpoint_interval_multiplier=CHECKPOINT_INTERVAL_MULTIPLIER,
        )
        try:
            for item in subscription:
                if isinstance(item, CaughtUp):
                    break
                if not isinstance(item, Checkpoint):
                    count += 1
        finally:
            subscription.stop()
        return Measured(count, time.perf_counter() - started)
    finally:
        client.close()


@dataclass(frozen=True)
class CopyPayload:
    """Rows in COPY's binary format, ready to send."""

    data: bytes
    rows: int


def copy_payload(events: Iterable[StoredEvent]) -> CopyPayload:
    """The rows the projection makes of the `user-created` events (each the first of its
    stream), in COPY's binary format."""
    if tuple(USER_COLUMNS) != COPIED_COLUMNS:
        raise RuntimeError(f"the read model's columns are now {USER_COLUMNS}: update copy_payload")
    parts = [b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)]
    rows = 0
    for event in events:
        if event.type != USER_CREATED:
            continue
        user = decode_user_created(event.data)
        name, full_name = user.username.encode(), user.full_name.encode()
        micros = (user.opened_at - _UNIX_EPOCH) // _MICROSECOND
        parts.append(
            struct.pack(
                f"!hi{len(name)}siqi{len(full_name)}si16siqiq",
                len(COPIED_COLUMNS),
                len(name),
                name,
                8,
                micros - _PG_EPOCH_MICROS,
                len(full_name),
                full_name,
                16,
                event.event_id.bytes,
                8,
                event.commit_position,
                8,
                event.revision,
            )
        )
        rows += 1
    parts.append(struct.pack("!h", -1))
    return CopyPayload(b"".join(parts), rows)


def copy_rows(pg_url: str, payload: CopyPayload) -> Measured:
    """COPY `payload` into the `"user"` table of a new schema and commit, timed; the schema is
    dropped after."""
    schema = f"bench_copy_{uuid.uuid4().hex[:8]}"
    migrate(pg_url, schema)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(schema, USER_TABLE),
        sql.SQL(", ").join(sql.Identifier(column) for column in COPIED_COLUMNS),
    )
    view = memoryview(payload.data)
    try:
        with psycopg.connect(pg_url) as conn:
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for at in range(0, len(view), COPY_BLOCK):
                    copy.write(view[at : at + COPY_BLOCK])
            conn.commit()
            seconds = time.perf_counter() - started
    finally:
        drop_schema(pg_url, schema)
    return Measured(payload.rows, seconds)


def drop_schema(pg_url: str, schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def best(runs: Iterable[Measured]) -> Measured:
    """The fastest of several runs (the least disturbed by the machine's other load)."""
    return max(runs, key=lambda run: run.rate)


def against(figure: Measured, ceiling: Measured, target: float) -> str:
    """`figure`'s rate as a multiple of `ceiling`'s, and whether it meets `target`."""
    ratio = figure.rate / ceiling.rate if ceiling.rate else 0.0
    verdict = "met" if ratio >= target else "NOT met"
    return f"{ratio:.2f}x the ceiling (target >= {target}x: {verdict})"

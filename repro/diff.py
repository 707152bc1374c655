"""Compare two read models row by row: `usersvc diff`.

Each side is a database and a schema holding the read model (`"user"` and `checkpoint`). Both are
read in one REPEATABLE READ, read-only transaction each (the rows and the checkpoints of a side
are one moment of it), through a server-side cursor ordered by username in byte order (`COLLATE
"C"`, so the databases' collations do not matter), and merged as they stream: memory stays the
same whatever the size of the tables. A username is only in A, only in B, or in both with
differing values of `COMPARED` (the row's content and the event that produced it); the serial
`id` is not compared. Rows are compared as tuples of what PostgreSQL sends (the time as UTC text)
and become `Row`s only when they differ: a million equal rows cost seconds. Each difference is
handed to a callback as it is found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from usersvc.readmodel import ReadModel

# Rows fetched from each side per round trip.
FETCH = 10_000
COMPARED = ("createdAt", "fullName", "revision", "eventId", "commitPosition")
_COLUMNS = ("username", *COMPARED)


class DiffError(RuntimeError):
    """A side cannot be read (unreachable, or no read model in the schema)."""


@dataclass(frozen=True, slots=True)
class Row:
    """A read-model row. The time and the event id are PostgreSQL's text of them (the time in
    UTC, ISO style): loading them as Python objects took half of a diff's time."""

    username: str
    created_at: str
    full_name: str
    revision: int
    event_id: str
    commit_position: int

    def value(self, column: str) -> Any:
        return {
            "createdAt": self.created_at,
            "fullName": self.full_name,
            "revision": self.revision,
            "eventId": self.event_id,
            "commitPosition": self.commit_position,
        }[column]


Kind = Literal["only-a", "only-b", "differs"]


@dataclass(frozen=True, slots=True)
class Difference:
    kind: Kind
    username: str
    a: Row | None
    b: Row | None
    columns: tuple[str, ...] = ()  # those that differ, for "differs"


@dataclass(frozen=True)
class Side:
    url: str
    schema: str

    @property
    def label(self) -> str:
        """Where it is, without credentials: host:port/database, schema."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return f"(unparsable URL), schema {self.schema}"
        host = str(info.get("host") or "localhost")
        port = str(info.get("port") or "5432")
        return f"{host}:{port}/{info.get('dbname', '')}, schema {self.schema}"


@dataclass
class Summary:
    only_a: int = 0
    only_b: int = 0
    differing: int = 0
    equal: int = 0
    checkpoints_a: dict[str, int] = field(default_factory=dict)
    checkpoints_b: dict[str, int] = field(default_factory=dict)

    @property
    def differ(self) -> bool:
        return bool(self.only_a or self.only_b or self.differing)


def diff(a: Side, b: Side, on_difference: Callable[[Difference], None]) -> Summary:
    """Compare the read models of `a` and `b`, calling `on_difference` for each difference in
    username order. Raises `DiffError` when a side cannot be read."""
    summary = Summary()
    with _reading(a, "A") as (rows_a, checkpoints_a), _reading(b, "B") as (rows_b, checkpoints_b):
        summary.checkpoints_a, summary.checkpoints_b = checkpoints_a, checkpoints_b
        _merge(rows_a, rows_b, summary, on_difference)
    return summary


def _merge(
    rows_a: Iterator[tuple[Any, ...]],
    rows_b: Iterator[tuple[Any, ...]],
    summary: Summary,
    on_difference: Callable[[Difference], None],
) -> None:
    """Merge two row streams ordered by username. Rows stay tuples (compared whole, in C) and
    become `Row`s only when they differ: a million equal rows cost a few seconds."""
    row_a, row_b = next(rows_a, None), next(rows_b, None)
    while row_a is not None and row_b is not None:
        name_a, name_b = row_a[0], row_b[0]
        if name_a == name_b:
            if row_a == row_b:
                summary.equal += 1
            else:
                one, other = Row(*row_a), Row(*row_b)
                columns = tuple(c for c in COMPARED if one.value(c) != other.value(c))
                summary.differing += 1
                on_difference(Difference("differs", name_a, one, other, columns))
            row_a, row_b = next(rows_a, None), next(rows_b, None)
        elif name_a < name_b:
            summary.only_a += 1
            on_difference(Difference("only-a", name_a, Row(*row_a), None))
            row_a = next(rows_a, None)
        else:
            summary.only_b += 1
            on_difference(Difference("only-b", name_b, None, Row(*row_b)))
            row_b = next(rows_b, None)
    while row_a is not None:
        summary.only_a += 1
        on_difference(Difference("only-a", row_a[0], Row(*row_a), None))
        row_a = next(rows_a, None)
    while row_b is not None:
        summary.only_b += 1
        on_difference(Difference("only-b", row_b[0], None, Row(*row_b)))
        row_b = next(rows_b, None)


@contextmanager
def _reading(side: Side, name: str) -> Iterator[tuple[Iterator[tuple[Any, ...]], dict[str, int]]]:
    """One side opened: its checkpoints read and its rows streamed, in one snapshot."""
    try:
        conn = psycopg.connect(
            side.url, connect_timeout=10, application_name=f"usersvc diff {name}"
        )
    except psycopg.Error as exc:
        raise DiffError(f"cannot connect to {name} ({side.label}): {_message(exc)}") from None
    with conn:
        model = ReadModel(side.schema)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            # Equal instants give equal text on both sides, whatever the servers' settings.
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute("SET DateStyle TO ISO")
            for type_name in ("uuid", "timestamptz"):
                conn.adapters.register_loader(type_name, TextLoader)
            for table in (model.users, model.checkpoints):
                found = conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),))
                row = found.fetchone()
                if row is None or row[0] is None:
                    raise DiffError(
                        f"{name} ({side.label}) holds no read model: no table"
                        f" {table.as_string(conn)}"
                    )
            checkpoints: dict[str, int] = dict(
                conn.execute(
                    sql.SQL("SELECT name, commit_position FROM {} ORDER BY name").format(
                        model.checkpoints
                    )
                ).fetchall()
            )
        except psycopg.Error as exc:
            raise DiffError(f"cannot read {name} ({side.label}): {_message(exc)}") from None
        yield _rows(conn, model, side, name), checkpoints


def _rows(
    conn: psycopg.Connection[Any], model: ReadModel, side: Side, name: str
) -> Iterator[tuple[Any, ...]]:
    query = sql.SQL('SELECT {} FROM {} ORDER BY username COLLATE "C"').format(
        sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS), model.users
    )
    try:
        with conn.cursor(name=f"usersvc_diff_{name.lower()}") as cur:
            cur.execute(query)
            while chunk := cur.fetchmany(FETCH):
                yield from chunk
    except psycopg.Error as exc:
        raise DiffError(f"reading {name} ({side.label}) failed: {_message(exc)}") from None


def _message(exc: psycopg.Error) -> str:
    primary = getattr(exc.diag, "message_primary", None)
    return str(primary) if primary else " ".join(str(exc).split())

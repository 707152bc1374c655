"""The projection on a real PostgreSQL: idempotence, skips, loud failures, atomic checkpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.fixtures.events import OPENED, created, other
from usersvc.readmodel import NOTIFY_CHANNEL
from usersvc.records import StoredEvent
from worker.projection import BatchResult, Projection, ProjectionError


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_url) as connection:
        yield connection


def users(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    conn.rollback()
    query = sql.SQL(
        'SELECT username, "fullName", "createdAt", "commitPosition" FROM {} ORDER BY id'
    ).format(sql.Identifier(schema, "user"))
    rows = conn.execute(query).fetchall()
    conn.rollback()
    return rows


def test_apply_inserts_users_and_moves_the_checkpoint_in_one_transaction(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    projection = Projection(schema, "main")
    result = projection.apply(conn, [created(10, f"a-{unique}"), created(20, f"b-{unique}")])
    conn.commit()
    assert result == BatchResult(applied=2, skipped=0, last_position=20)
    assert projection.checkpoint(conn) == 20
    assert users(conn, schema) == [
        (f"a-{unique}", "Donald Le", OPENED, 10),
        (f"b-{unique}", "Donald Le", OPENED, 20),
    ]


def test_reapplying_a_batch_changes_nothing(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    projection = Projection(schema, "main")
    batch = [created(10, f"a-{unique}"), created(20, f"b-{unique}")]
    projection.apply(conn, batch)
    conn.commit()
    before = users(conn, schema)
    projection.apply(conn, batch)
    projection.apply(conn, batch[:1])
    conn.commit()
    assert users(conn, schema) == before
    assert projection.checkpoint(conn) == 20, "the checkpoint never moves backwards"


def test_the_first_user_created_for_a_username_wins_even_within_one_batch(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    projection = Projection(schema, "main")
    name = f"dup-{unique}"
    projection.apply(conn, [created(10, name, "First"), created(11, name, "Second")])
    conn.commit()
    assert [(row[0], row[1]) for row in users(conn, schema)] == [(name, "First")]


def test_unknown_event_types_are_skipped_and_counted(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    projection = Projection(schema, "main")
    result = projection.apply(
        conn,
        [
            other(5, f"user-{unique}", "user-renamed", b"not even json"),
            created(6, f"a-{unique}"),
            other(7, f"user-{unique}", "$metadata"),
        ],
    )
    conn.commit()
    assert result == BatchResult(applied=1, skipped=2, last_position=7)
    assert projection.checkpoint(conn) == 7


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"fullName": "No Name", "openedAt": "2024-01-01T00:00:00.000Z"}',
        b'{"username": "x", "openedAt": "2024-01-01T00:00:00.000Z"}',
        b'{"username": "x", "fullName": "X", "openedAt": "yesterday"}',
    ],
)
def test_a_malformed_user_created_raises_naming_its_position_and_writes_nothing(
    conn: psycopg.Connection[Any], schema: str, unique: str, data: bytes
) -> None:
    projection = Projection(schema, "main")
    batch = [created(40, f"ok-{unique}"), other(41, "user-x", "user-created", data)]
    with pytest.raises(ProjectionError, match="commit position 41 in stream 'user-x'") as caught:
        projection.apply(conn, batch)
    conn.rollback()
    assert caught.value.commit_position == 41
    assert users(conn, schema) == []
    assert projection.checkpoint(conn) is None


def test_a_username_that_does_not_match_its_stream_is_malformed(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    event = created(50, f"a-{unique}")
    moved = StoredEvent(**{**_fields(event), "stream": f"user-b-{unique}"})
    with pytest.raises(ProjectionError, match="does not match the stream"):
        Projection(schema, "main").apply(conn, [moved])


def _fields(event: StoredEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in StoredEvent.__slots__}


def test_a_database_failure_mid_batch_leaves_neither_rows_nor_checkpoint(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    table = sql.Identifier(schema, "user")
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT no_bad CHECK (username NOT LIKE 'bad-%%')").format(
            table
        )
    )
    conn.commit()
    projection = Projection(schema, "main")
    batch = [created(60, f"good-{unique}"), created(61, f"bad-{unique}")]
    with pytest.raises(psycopg.errors.CheckViolation):
        projection.apply(conn, batch)
    conn.rollback()
    assert users(conn, schema) == []
    assert projection.checkpoint(conn) is None


def test_a_rolled_back_transaction_undoes_rows_and_checkpoint_together(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    projection = Projection(schema, "main")
    projection.apply(conn, [created(70, f"a-{unique}")])
    conn.rollback()
    assert users(conn, schema) == []
    assert projection.checkpoint(conn) is None


def test_apply_refuses_an_autocommit_connection_outside_a_transaction(
    pg_url: str, schema: str, unique: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as auto:
        with pytest.raises(psycopg.ProgrammingError, match="open transaction"):
            Projection(schema, "main").apply(auto, [created(80, f"a-{unique}")])
        with auto.transaction():
            Projection(schema, "main").apply(auto, [created(80, f"a-{unique}")])
        assert Projection(schema, "main").checkpoint(auto) == 80


def test_an_empty_batch_touches_nothing(conn: psycopg.Connection[Any], schema: str) -> None:
    projection = Projection(schema, "main")
    assert projection.apply(conn, []) == BatchResult(0, 0, None)
    assert projection.checkpoint(conn) is None


def test_advance_moves_only_the_checkpoint(conn: psycopg.Connection[Any], schema: str) -> None:
    projection = Projection(schema, "main")
    projection.advance(conn, 900)
    conn.commit()
    assert projection.checkpoint(conn) == 900
    assert users(conn, schema) == []


def test_each_batch_notifies_its_checkpoint_on_commit(
    pg_url: str, conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        Projection(schema, "main").apply(conn, [created(90, f"a-{unique}")])
        conn.commit()
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [f"{schema}:main:90"]


def test_checkpoints_of_different_names_are_independent(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    Projection(schema, "one").apply(conn, [created(100, f"a-{unique}")])
    conn.commit()
    assert Projection(schema, "two").checkpoint(conn) is None


def test_opened_at_is_stored_as_the_same_instant_whatever_its_offset(
    conn: psycopg.Connection[Any], schema: str, unique: str
) -> None:
    name = f"tz-{unique}"
    data = (
        b'{"username": "%s", "fullName": "Zoned", "openedAt": "1969-12-31T23:59:59.123456-02:00"}'
        % name.encode()
    )
    event = StoredEvent(1, f"user-{name}", 0, uuid.uuid4(), "user-created", data, b"", "", OPENED)
    Projection(schema, "main").apply(conn, [event])
    conn.commit()
    assert users(conn, schema)[0][2] == datetime(1970, 1, 1, 1, 59, 59, 123456, tzinfo=UTC)

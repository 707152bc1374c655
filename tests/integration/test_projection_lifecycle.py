"""The projection equals the one fold for every short life, however it is cut into batches, and
whatever is delivered twice (real PostgreSQL).

Every sequence of up to five events over {created, name changed, deleted} (each event with a name
of its own, so the wrong winner shows), cut into three batches in every possible way, is one
user; all users go through the same `Projection.apply` calls, and after each batch every user's
row must be what `usersvc.lifecycle.fold` gives for the events so far (no row for no user or a
deleted one).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.fixtures.lifecycle import as_row
from usersvc.events import (
    FullNameChanged,
    UserCreated,
    UserDeleted,
    UserEvent,
    encode_event,
    encode_metadata,
    event_type,
    stream_name,
)
from usersvc.lifecycle import fold
from usersvc.records import StoredEvent
from worker.projection import Projection

LONGEST = 5
BATCHES = 3
START = datetime(2025, 6, 1, tzinfo=UTC)


def user_event(kind: str, username: str, index: int) -> UserEvent:
    moment = START + timedelta(seconds=index)
    if kind == "C":
        return UserCreated(username, f"Created at {index}", moment)
    if kind == "N":
        return FullNameChanged(username, f"Changed at {index}", moment)
    return UserDeleted(username, moment)


@dataclass
class Case:
    username: str
    events: list[UserEvent]
    cuts: tuple[int, ...]  # where each batch ends: len(cuts) == BATCHES, the last is len(events)

    def chunk(self, batch: int) -> list[tuple[int, UserEvent]]:
        start = 0 if batch == 0 else self.cuts[batch - 1]
        return list(enumerate(self.events))[start : self.cuts[batch]]

    def expected(self, batches: int) -> tuple[Any, ...] | None:
        end = 0 if batches == 0 else self.cuts[batches - 1]
        return as_row(fold(list(enumerate(self.events))[:end]))


def cases(variant: str) -> list[Case]:
    found = []
    for length in range(1, LONGEST + 1):
        for kinds in itertools.product("CND", repeat=length):
            for first, second in itertools.combinations_with_replacement(range(length + 1), 2):
                username = f"{variant}-{''.join(kinds)}-{first}{second}"
                events = [user_event(k, username, i) for i, k in enumerate(kinds)]
                found.append(Case(username, events, (first, second, length)))
    return found


class Batches:
    """Stored events for the batches of many cases at once, with increasing positions."""

    def __init__(self) -> None:
        self.position = 0

    def batch(self, cases: list[Case], number: int) -> list[StoredEvent]:
        events = []
        for case in cases:
            for revision, event in case.chunk(number):
                self.position += 10
                events.append(stored(self.position, revision, event))
        return events


def stored(position: int, revision: int, event: UserEvent) -> StoredEvent:
    return StoredEvent(
        commit_position=position,
        stream=stream_name(event.username),
        revision=revision,
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{event.username}/{revision}"),
        type=event_type(event),
        data=encode_event(event),
        metadata=encode_metadata(),
        content_type="application/json",
        recorded_at=START + timedelta(microseconds=position),
    )


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_url) as connection:
        yield connection


def rows(conn: psycopg.Connection[Any], schema: str, variant: str) -> dict[str, tuple[Any, ...]]:
    found = conn.execute(
        sql.SQL(
            'SELECT username, "fullName", "createdAt", revision FROM {} WHERE username LIKE %s'
        ).format(sql.Identifier(schema, "user")),
        (variant + "-%",),
    ).fetchall()
    conn.commit()
    return {row[0]: tuple(row) for row in found}


def mismatches(
    conn: psycopg.Connection[Any], schema: str, variant: str, cases: list[Case], batches: int
) -> list[str]:
    """The users whose row is not what the fold says after `batches` batches (at most 10)."""
    actual = rows(conn, schema, variant)
    wrong = []
    for case in cases:
        expected, got = case.expected(batches), actual.get(case.username)
        if expected != got:
            wrong.append(f"{case.username}: expected {expected}, got {got}")
    return wrong[:10]


def apply(conn: psycopg.Connection[Any], projection: Projection, events: list[StoredEvent]) -> None:
    projection.apply(conn, events)
    conn.commit()


def test_every_short_life_cut_in_every_way_projects_to_the_fold(
    conn: psycopg.Connection[Any], schema: str
) -> None:
    projection, users, history = Projection(schema, "lives"), cases("plain"), Batches()
    for number in range(BATCHES):
        apply(conn, projection, history.batch(users, number))
        assert mismatches(conn, schema, "plain", users, number + 1) == []


def test_a_batch_delivered_twice_in_a_row_changes_nothing_the_second_time(
    conn: psycopg.Connection[Any], schema: str
) -> None:
    projection, users, history = Projection(schema, "twice"), cases("twice"), Batches()
    for number in range(BATCHES):
        batch = history.batch(users, number)
        apply(conn, projection, batch)
        apply(conn, projection, batch)
        assert mismatches(conn, schema, "twice", users, number + 1) == []


def test_the_whole_history_delivered_again_ends_where_it_was(
    conn: psycopg.Connection[Any], schema: str
) -> None:
    projection, users, history = Projection(schema, "again"), cases("again"), Batches()
    batches = [history.batch(users, number) for number in range(BATCHES)]
    for batch in batches + batches:
        apply(conn, projection, batch)
    assert mismatches(conn, schema, "again", users, BATCHES) == []

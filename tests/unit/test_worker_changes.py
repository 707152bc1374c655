"""`worker.changes.changes_of`: what each batch sends to the three statements (no database).

What the statements then do with a row that exists or not is shown against PostgreSQL in
tests/integration/test_projection_lifecycle.py (every short life, cut in every way, delivered
twice); here each sequence that matters is spelled out.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.events import other
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
from usersvc.records import StoredEvent
from worker.changes import ChangeError, Changes, Columns, changes_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Stream:
    """Events of one user with consecutive revisions and positions 100 apart."""

    def __init__(self, username: str = "ann", revision: int = 0, position: int = 100) -> None:
        self.username = username
        self.revision = revision
        self.position = position

    def _next(self, event: UserEvent) -> StoredEvent:
        stored = StoredEvent(
            self.position,
            stream_name(self.username),
            self.revision,
            uuid.uuid4(),
            event_type(event),
            encode_event(event),
            encode_metadata(),
            "application/json",
            T0,
        )
        self.revision += 1
        self.position += 100
        return stored

    def created(self, full_name: str, minute: int = 0) -> StoredEvent:
        return self._next(UserCreated(self.username, full_name, T0 + timedelta(minutes=minute)))

    def changed(self, full_name: str) -> StoredEvent:
        return self._next(FullNameChanged(self.username, full_name, T0))

    def deleted(self) -> StoredEvent:
        return self._next(UserDeleted(self.username, T0))


def micros(minute: int) -> int:
    return (T0 + timedelta(minutes=minute) - EPOCH) // timedelta(microseconds=1)


def rows(columns: Columns) -> list[tuple[object, ...]]:
    """Each row of a statement as (username, revision, position, full name)."""
    return list(
        zip(
            columns.usernames,
            columns.revisions,
            columns.positions,
            columns.full_names or [None] * len(columns.usernames),
            strict=True,
        )
    )


def statements(changes: Changes) -> dict[str, list[tuple[object, ...]]]:
    return {
        "delete": [
            (u, r)
            for u, r in zip(changes.deletes.usernames, changes.deletes.revisions, strict=True)
        ],
        "update": rows(changes.updates),
        "insert": rows(changes.inserts),
    }


def test_a_new_user_is_one_insert() -> None:
    ann = Stream()
    batch = [ann.created("Ann A", minute=3)]
    changes = changes_of(batch)
    assert statements(changes) == {"delete": [], "update": [], "insert": [("ann", 0, 100, "Ann A")]}
    assert changes.inserts.created_at == [micros(3)]
    assert changes.inserts.created_positions == [100]
    assert changes.inserts.event_ids == [batch[0].event_id]


def test_a_creation_and_its_changes_are_one_insert_of_the_last_name_and_one_update() -> None:
    ann = Stream()
    changes = changes_of([ann.created("Ann A"), ann.changed("Ann B"), ann.changed("Ann C")])
    # No row before: the insert brings the last name. A live row before (the user-created was
    # a duplicate): the update does, and the insert then finds the row at that revision.
    assert statements(changes) == {
        "delete": [],
        "update": [("ann", 2, 300, "Ann C")],
        "insert": [("ann", 2, 300, "Ann C")],
    }
    assert changes.inserts.created_positions == [100]


def test_several_lives_in_one_batch_are_one_delete_and_one_insert_of_the_last_life() -> None:
    ann = Stream()
    batch = [
        ann.created("Ann A", minute=0),
        ann.changed("Ann B"),
        ann.deleted(),
        ann.created("Ann D", minute=4),
        ann.changed("Ann E"),
        ann.deleted(),
        ann.created("Ann G", minute=7),
        ann.changed("Ann H"),
    ]
    changes = changes_of(batch)
    assert statements(changes) == {
        "delete": [("ann", 5)],
        "update": [],
        "insert": [("ann", 7, 800, "Ann H")],
    }
    assert changes.inserts.created_at == [micros(7)]
    assert changes.inserts.created_positions == [700]


def test_a_life_that_ends_in_the_batch_is_only_a_delete() -> None:
    ann = Stream()
    changes = changes_of([ann.created("Ann A"), ann.changed("Ann B"), ann.deleted()])
    assert statements(changes) == {"delete": [("ann", 2)], "update": [], "insert": []}


def test_a_duplicate_user_created_within_a_batch_changes_nothing_the_first_wins() -> None:
    ann = Stream()
    changes = changes_of([ann.created("Ann A", minute=1), ann.created("Ann Dup", minute=2)])
    assert statements(changes) == {"delete": [], "update": [], "insert": [("ann", 1, 200, "Ann A")]}
    assert changes.inserts.created_at == [micros(1)]


def test_a_duplicate_user_created_in_a_later_batch_is_an_insert_that_a_live_row_refuses() -> None:
    ann = Stream(revision=1, position=200)  # the first user-created came in an earlier batch
    changes = changes_of([ann.created("Ann Dup")])
    # For a live row the insert only moves the revision (ON CONFLICT): its name stays.
    assert statements(changes) == {
        "delete": [],
        "update": [],
        "insert": [("ann", 1, 200, "Ann Dup")],
    }


def test_a_change_after_a_deletion_in_the_batch_changes_nothing() -> None:
    ann = Stream(revision=3, position=400)
    changes = changes_of([ann.deleted(), ann.changed("Ann Ghost")])
    assert statements(changes) == {"delete": [("ann", 3)], "update": [], "insert": []}


def test_a_change_after_a_deletion_in_an_earlier_batch_is_an_update_that_finds_no_row() -> None:
    ann = Stream(revision=3, position=400)
    changes = changes_of([ann.changed("Ann Ghost")])
    assert statements(changes) == {
        "delete": [],
        "update": [("ann", 3, 400, "Ann Ghost")],
        "insert": [],
    }


def test_a_change_then_a_creation_covers_a_live_user_and_one_with_no_row() -> None:
    # Live before the batch: the change applies and the user-created is a duplicate (update).
    # Deleted in an earlier batch: the change applies to no one and the creation starts a new
    # life with its own name (insert).
    ann = Stream(revision=2, position=300)
    changes = changes_of([ann.changed("Ann Changed"), ann.created("Ann New", minute=5)])
    assert statements(changes) == {
        "delete": [],
        "update": [("ann", 3, 400, "Ann Changed")],
        "insert": [("ann", 3, 400, "Ann New")],
    }
    assert changes.inserts.created_at == [micros(5)]


def test_every_statement_carries_the_revision_of_the_users_last_event() -> None:
    # What makes a re-delivered batch change nothing: each statement applies only above the
    # row's stored revision, which the first delivery set to the last event's.
    ann, bob = Stream("ann"), Stream("bob", position=150)
    batch = [
        ann.created("Ann A"),
        bob.created("Bob A"),
        ann.changed("Ann B"),
        bob.deleted(),
        bob.created("Bob C"),
    ]
    first, second = changes_of(batch), changes_of(batch)
    assert first == second
    assert statements(first) == {
        "delete": [("bob", 1)],
        "update": [("ann", 1, 200, "Ann B")],
        "insert": [("ann", 1, 200, "Ann B"), ("bob", 2, 350, "Bob C")],
    }


def test_events_of_other_types_are_counted_and_skipped() -> None:
    ann = Stream()
    changes = changes_of(
        [ann.created("Ann A"), other(150, "user-ann", "user-renamed"), ann.changed("Ann B")]
    )
    assert (changes.applied, changes.skipped) == (2, 1)


def test_an_event_whose_username_is_not_its_streams_is_refused() -> None:
    event = Stream("ann").created("Ann A")
    moved = StoredEvent(
        event.commit_position,
        stream_name("bob"),
        event.revision,
        event.event_id,
        event.type,
        event.data,
        event.metadata,
        event.content_type,
        event.recorded_at,
    )
    with pytest.raises(ChangeError, match="does not match the stream name") as caught:
        changes_of([moved])
    assert caught.value.event is moved


def test_a_malformed_event_of_a_known_type_is_refused() -> None:
    with pytest.raises(ChangeError, match="deletedAt"):
        changes_of([other(100, "user-ann", "user-deleted", b'{"username": "ann"}')])

"""The aggregate: a stream folded with the one fold, its current life, and its past states."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from esdbclient import RecordedEvent

from service.aggregate import load
from usersvc.events import (
    FullNameChanged,
    UserCreated,
    UserDeleted,
    UserEvent,
    encode_event,
    encode_metadata,
    event_type,
)
from usersvc.lifecycle import Deleted, User

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def recorded(revision: int, event: UserEvent | None, minutes: int) -> RecordedEvent:
    return RecordedEvent(
        type=event_type(event) if event is not None else "something-else",
        data=encode_event(event) if event is not None else b'{"note": 1}',
        metadata=encode_metadata(),
        content_type="application/json",
        id=uuid.uuid4(),
        stream_name="user-ann",
        stream_position=revision,
        commit_position=100 + revision,
        prepare_position=100 + revision,
        recorded_at=T0 + timedelta(minutes=minutes),
    )


LIVES = [
    recorded(0, UserCreated("ann", "Ann", T0), 0),
    recorded(1, FullNameChanged("ann", "Ann B", T0), 1),
    recorded(2, UserDeleted("ann", T0), 2),
    recorded(3, UserCreated("ann", "Ann New", T0), 3),
    recorded(4, None, 4),
    recorded(5, FullNameChanged("ann", "Ann N2", T0), 5),
]


def test_the_current_life_starts_at_the_last_creation_after_a_deletion() -> None:
    stream = load("ann", LIVES)
    assert [e.revision for e in stream.life()] == [3, 4, 5]
    assert stream.user == User("ann", "Ann N2", T0, 5)
    assert stream.revision == 5


def test_past_states_are_only_those_of_the_current_life() -> None:
    stream = load("ann", LIVES)
    assert stream.at_revision(1) is None
    assert stream.at_revision(3) == User("ann", "Ann New", T0, 3)
    assert stream.at_revision(4) == User("ann", "Ann New", T0, 3)
    assert stream.as_of(T0 + timedelta(minutes=1)) is None
    assert stream.as_of(T0 + timedelta(minutes=5, seconds=1)) == User("ann", "Ann N2", T0, 5)


def test_a_deleted_user_has_no_life_and_its_deletion_revision() -> None:
    stream = load("ann", LIVES[:3])
    assert stream.life() == ()
    assert stream.state == Deleted(2)
    assert stream.commit_position_of(2) == 102


def test_a_second_creation_in_a_live_life_keeps_the_first() -> None:
    stream = load("ann", [LIVES[0], recorded(1, UserCreated("ann", "Other", T0), 1)])
    assert [e.revision for e in stream.life()] == [0, 1]
    assert stream.user == User("ann", "Ann", T0, 1)


def test_no_stream_is_no_user() -> None:
    stream = load("ann", [])
    assert (stream.state, stream.revision, stream.life()) == (None, None, ())

"""The user's state folded from the events of its stream: the one fold, shared by the service's
commands, history and time travel, and by the projection's rules.

A stream may hold several lives of one username: created, changed, deleted, created again. The
current life starts at the last `user-created` that follows a deletion (or the start). Rules, the
same everywhere:
- `user-created` starts a life when there is none (no events yet, or the last life was deleted);
  a second `user-created` in a live life (written by the original service, which never checked)
  changes nothing: the first one wins.
- `user-full-name-changed` sets the full name of a live user; on no user or a deleted one it
  changes nothing.
- `user-deleted` ends the life; the state keeps only the revision it happened at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from usersvc.events import FullNameChanged, UserCreated, UserDeleted, UserEvent


@dataclass(frozen=True, slots=True)
class User:
    """A live user as of `revision` (the stream revision of the last event folded in)."""

    username: str
    full_name: str
    created_at: datetime
    revision: int


@dataclass(frozen=True, slots=True)
class Deleted:
    """The last life ended at `revision`; nothing of the user is kept."""

    revision: int


State = User | Deleted | None


def evolve(state: State, event: UserEvent, revision: int) -> State:
    """The state after `event` (at stream `revision`)."""
    match event:
        case UserCreated(username, full_name, opened_at):
            if isinstance(state, User):
                return replace(state, revision=revision)
            return User(username, full_name, opened_at, revision)
        case FullNameChanged(_, full_name, _):
            if isinstance(state, User):
                return replace(state, full_name=full_name, revision=revision)
            return state
        case UserDeleted():
            return Deleted(revision)


def fold(events: Iterable[tuple[int, UserEvent]], state: State = None) -> State:
    """Fold (revision, event) pairs, in stream order, into the state."""
    for revision, event in events:
        state = evolve(state, event, revision)
    return state

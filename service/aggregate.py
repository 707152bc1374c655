"""The user aggregate: a user's stream as read, decoded, and folded with the one fold.

Commands decide against `UserStream.state`; history and time travel look at `UserStream.life()`,
the events of the current life only (DESIGN §2): from the `user-created` that started the life the
user is living now. A deleted user, or one that never existed, has no current life, so nothing of
an earlier life is shown, whether or not its events are still readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from esdbclient import RecordedEvent

from service.errors import EventUnreadable
from usersvc.events import (
    MalformedEvent,
    UserDeleted,
    UserEvent,
    decode_event,
    schema_version_of,
)
from usersvc.lifecycle import Deleted, State, User, evolve, fold


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One recorded event of the stream, decoded (`event` is None for a type that is not a
    user's event: it is kept for the history but changes no state)."""

    revision: int
    commit_position: int | None
    recorded_at: datetime | None
    type: str
    schema_version: int
    event: UserEvent | None
    data: bytes


@dataclass(frozen=True)
class UserStream:
    """What a command, the history and time travel need of a stream: the state it folds to, and
    the events of the current life (when the user is not alive, only those from its deletion
    on). The earlier events are read once and folded, then let go."""

    username: str
    events: tuple[StreamEvent, ...]
    state: State
    # The revision of the stream's last event (None: no stream); it may be past `events[-1]`
    # when nothing was kept of its tail (a type that is not ours after a user who never lived).
    revision: int | None = None

    @property
    def user(self) -> User | None:
        return self.state if isinstance(self.state, User) else None

    def life(self) -> tuple[StreamEvent, ...]:
        """The events of the current life, in order; () when the user is not alive."""
        return self.events if isinstance(self.state, User) else ()

    def commit_position_of(self, revision: int) -> int | None:
        for recorded in reversed(self.events):
            if recorded.revision == revision:
                return recorded.commit_position
        return None

    def at_revision(self, revision: int) -> User | None:
        """The user as of `revision` of the current life; None before the life started."""
        return _user(fold(_pairs(e for e in self.life() if e.revision <= revision)))

    def as_of(self, moment: datetime) -> User | None:
        """The user as of `moment`: the current life's events up to the first one recorded
        later (the rule of `usersvc replay --until`); None before the life started.

        Times compare at the millisecond, the precision the history shows them at: `asOf` set to
        an event's `recordedAt` includes that event.
        """
        prefix: list[StreamEvent] = []
        for recorded in self.life():
            if recorded.recorded_at is None or _to_millisecond(recorded.recorded_at) > moment:
                break
            prefix.append(recorded)
        return _user(fold(_pairs(prefix)))


def load(username: str, records: Sequence[RecordedEvent]) -> UserStream:
    """Decode and fold the recorded events of `user-<username>`.

    Raises `EventUnreadable` naming the first event this code cannot decode.
    """
    return extend(UserStream(username, (), None), records)


def extend(stream: UserStream, records: Sequence[RecordedEvent]) -> UserStream:
    """`stream` with the events recorded after it (`records`, in order) folded in."""
    if not records:
        return stream
    events = stream.events + tuple(_decoded(stream.username, record) for record in records)
    state = stream.state
    # Where the current life started, and where the last deletion is, in `events`: what came
    # before them is never shown. A stream kept earlier starts at one of them.
    life_start = 0 if isinstance(state, User) else None
    deletion = 0 if isinstance(state, Deleted) else None
    for index in range(len(stream.events), len(events)):
        event = events[index].event
        if event is None:
            continue
        before = state
        state = evolve(state, event, events[index].revision)
        if isinstance(state, User) and not isinstance(before, User):
            life_start = index
        elif isinstance(event, UserDeleted):
            deletion = index
    if isinstance(state, User):
        kept = events[life_start or 0 :]
    elif isinstance(state, Deleted):
        kept = events[deletion or 0 :]
    else:
        kept = ()
    return UserStream(stream.username, kept, state, records[-1].stream_position)


def _decoded(username: str, record: RecordedEvent) -> StreamEvent:
    try:
        event = decode_event(record.type, record.data, record.metadata)
    except MalformedEvent as exc:
        # Why goes to the log (the error's cause), as every 5xx's: the stored data's own words.
        raise EventUnreadable(
            f"event {record.stream_position} of {username!r} ({record.type}) cannot be read by "
            "this version of the service"
        ) from exc
    try:
        version = schema_version_of(record.metadata)
    except MalformedEvent:
        version = 1  # only for a type that is not ours: ours were checked by decode_event
    return StreamEvent(
        revision=record.stream_position,
        commit_position=record.commit_position,
        recorded_at=record.recorded_at,
        type=record.type,
        schema_version=version,
        event=event,
        data=record.data,
    )


def _pairs(events: Iterable[StreamEvent]) -> Iterable[tuple[int, UserEvent]]:
    return ((e.revision, e.event) for e in events if e.event is not None)


def _to_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _user(state: State) -> User | None:
    return state if isinstance(state, User) else None

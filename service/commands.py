"""The user's commands: register, change the full name, delete. Each reads the stream, folds it,
decides against the state, and appends expecting the revision it read (DESIGN §2).

A change between the read and the append is a `StreamConflict` from the store; here it becomes
412 (the state moved on) or 404 (the user is gone), never an overwrite. Each event carries its own
id, and an append that timed out but was written is recognised by that id when the stream is read
again after the conflict, so a retried request never reports its own success as a race.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from esdbclient import NewEvent, RecordedEvent

from service.aggregate import UserStream, extend, load
from service.errors import PreconditionFailed, UsernameTaken, UserNotFound
from service.event_store import StreamConflict
from service.preconditions import Condition, etag
from service.stream_cache import StreamCache
from usersvc.events import (
    SCHEMA_VERSIONS,
    USER_DELETED,
    FullNameChanged,
    UserCreated,
    UserDeleted,
    UserEvent,
    encode_event,
    encode_metadata,
    event_type,
    stream_name,
)
from usersvc.lifecycle import Deleted, User, evolve

log = logging.getLogger(__name__)

_EVENT_ID_NAMESPACE = uuid.UUID("5b0c3a52-6f4e-4f38-9d4e-2f0c6f1a7e10")
# Re-reads after a conflict on create: each one either finds the username taken, or a deletion to
# append after (which a concurrent registration may win).
CREATE_ATTEMPTS = 3


class StorePort(Protocol):
    def read(self, stream: str) -> Sequence[RecordedEvent]: ...
    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None: ...
    def append(self, stream: str, expected: int | None, event: NewEvent) -> int: ...
    def truncate_before(self, stream: str, revision: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Written:
    """Where the command's event went (or the last event, when nothing had to be written)."""

    commit_position: int
    revision: int


@dataclass(frozen=True, slots=True)
class Changed:
    user: User
    written: Written
    appended: bool


def event_id(user: UserCreated, request_id: str) -> uuid.UUID:
    """A stable event id for a client's request: its retries are recognised as the same write."""
    return uuid.uuid5(_EVENT_ID_NAMESPACE, "\n".join((request_id, user.username, user.full_name)))


def new_event(event: UserEvent, correlation_id: str, event_id: uuid.UUID | None = None) -> NewEvent:
    type_ = event_type(event)
    return NewEvent(
        type=type_,
        data=encode_event(event),
        metadata=encode_metadata(
            correlation_id=correlation_id, schema_version=SCHEMA_VERSIONS[type_]
        ),
        content_type="application/json",
        id=event_id or uuid.uuid4(),
    )


class UserCommands:
    def __init__(
        self,
        store: StorePort,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache: StreamCache | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.cache = cache if cache is not None else StreamCache()

    def load(self, username: str) -> UserStream:
        """The user's stream as it is now: what this process folded before (`StreamCache`)
        extended with what was appended since, or the whole stream read and folded."""
        stream = stream_name(username)
        kept = self.cache.get(username)
        if kept is None or kept.revision is None:
            current = load(username, self.store.read(stream))
        else:
            newer = self.store.read_from(stream, kept.revision + 1)
            current = load(username, []) if newer is None else extend(kept, newer)
        self.cache.put(current)
        return current

    def register(
        self, user: UserCreated, correlation_id: str, *, idempotent: bool = False
    ) -> Written:
        """Append `user-created` expecting no stream or, after a deletion, exactly the deletion.

        With `idempotent` (the client sent `X-Request-ID`), the event id is derived from the
        request id, username and full name, so the same request sent again answers 201 again.
        Before a new life starts, a half-done deletion is finished (its `$tb` set), so that
        nothing of the earlier life stays readable.
        """
        own_id = event_id(user, correlation_id) if idempotent else None
        event = new_event(user, correlation_id, own_id)
        stream = stream_name(user.username)
        expected: int | None = None
        for _ in range(CREATE_ATTEMPTS):
            try:
                position = self.store.append(stream, expected, event)
            except StreamConflict:
                records = self.store.read(stream)
                ours = _ours(records, event.id)
                if ours is not None:
                    return ours
                if not records or records[-1].type != USER_DELETED:
                    raise UsernameTaken(f"username {user.username!r} is taken") from None
                expected = records[-1].stream_position
                self.store.truncate_before(stream, expected)
                continue
            return Written(position, 0 if expected is None else expected + 1)
        raise UsernameTaken(f"username {user.username!r} is taken")

    def change_full_name(
        self, username: str, condition: Condition, full_name: str | None, correlation_id: str
    ) -> Changed:
        """Set the full name of a live user whose revision `condition` names. The same name (or
        none given) appends nothing."""
        stream = self.load(username)
        user = _live(stream, condition)
        if full_name is None or full_name == user.full_name:
            position = stream.commit_position_of(user.revision) or 0
            return Changed(user, Written(position, user.revision), appended=False)
        change = FullNameChanged(username, full_name, self.clock())
        written = self._append(stream, change, correlation_id)
        changed = evolve(user, change, written.revision)
        assert isinstance(changed, User)
        return Changed(changed, written, appended=True)

    def delete(self, username: str, condition: Condition, correlation_id: str) -> Written:
        """Append `user-deleted` (no personal data) to a live user whose revision `condition`
        names, then truncate the stream before it. Both must be durable for a success; a
        deletion whose truncation did not happen is finished by the next call, whatever its
        condition (the user already is deleted: only the forgetting is left to do)."""
        stream = self.load(username)
        if isinstance(stream.state, Deleted):
            revision = stream.state.revision
            if self.store.truncate_before(stream_name(username), revision):
                log.info("finished the deletion of %s: truncated before %d", username, revision)
                return Written(stream.commit_position_of(revision) or 0, revision)
            raise UserNotFound(f"no user {username!r}")
        _live(stream, condition)
        written = self._append(stream, UserDeleted(username, self.clock()), correlation_id)
        self.store.truncate_before(stream_name(username), written.revision)
        return written

    def _append(self, stream: UserStream, event: UserEvent, correlation_id: str) -> Written:
        """Append expecting the revision the stream was read at; a race is 412 or 404."""
        new = new_event(event, correlation_id)
        name = stream_name(stream.username)
        expected = stream.revision
        try:
            position = self.store.append(name, expected, new)
        except StreamConflict:
            records = self.store.read(name)
            ours = _ours(records, new.id)
            if ours is not None:
                return ours
            user = _live(load(stream.username, records), None)
            raise PreconditionFailed(
                f"user {stream.username!r} changed while this request was handled; it is now at "
                f"revision {user.revision}",
                etag(user.revision),
            ) from None
        return Written(position, 0 if expected is None else expected + 1)


def _live(stream: UserStream, condition: Condition | None) -> User:
    """The live user, if `condition` (when given) names its revision; else 404 or 412."""
    user = stream.user
    if user is None:
        raise UserNotFound(f"no user {stream.username!r}")
    if condition is not None and not condition.matches_strongly(user.revision):
        raise PreconditionFailed(
            f"If-Match does not name the current revision of {stream.username!r}, "
            f"{etag(user.revision)}; read it again and decide on that",
            etag(user.revision),
        )
    return user


def _ours(records: Sequence[RecordedEvent], event_id: uuid.UUID) -> Written | None:
    """Where the event with `event_id` was written, if it is in the stream."""
    for record in reversed(records):
        if record.id == event_id and record.commit_position is not None:
            log.info("append of %s was written by an earlier attempt", record.stream_name)
            return Written(record.commit_position, record.stream_position)
    return None

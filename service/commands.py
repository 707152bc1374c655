"""The user's commands: register, change the full name, delete. Each reads the stream, folds it,
decides against the state, and appends expecting the revision it read (DESIGN §2).

A change between the read and the append is a `StreamConflict` from the store; here it becomes
412 (the state moved on) or 404 (the user is gone), never an overwrite. Each event carries its own
id, and an append that timed out but was written is recognised by that id when the stream is read
again after the conflict, so a retried request never reports its own success as a race (see
`service.retries` for a registration sent again by the client).

An append whose outcome is unknown (`AppendOutcomeUnknown`) is answered with what the client can
do to find out safely, which differs by command.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from esdbclient import NewEvent, RecordedEvent

from service.aggregate import UserStream, extend, load
from service.errors import (
    AppendOutcomeUnknown,
    EventStoreUnavailable,
    PreconditionFailed,
    UsernameTaken,
    UserNotFound,
)
from service.preconditions import Condition, etag
from service.retries import Written, event_id, find_own, repeated_registration
from service.store_errors import StreamConflict
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

# Re-reads after a conflict on create: each one either finds the username taken, or a deletion to
# append after (which a concurrent registration may win).
CREATE_ATTEMPTS = 3


class StorePort(Protocol):
    def read(self, stream: str) -> Sequence[RecordedEvent]: ...
    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None: ...
    def append(self, stream: str, expected: int | None, event: NewEvent) -> int: ...
    def truncate_before(self, stream: str, revision: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Changed:
    user: User
    written: Written
    appended: bool


CHANGE_UNKNOWN = (
    "EventStoreDB did not confirm the change, which may or may not have been made: read the "
    "user again (its ETag and fullName show whether it was) before you send it again"
)
DELETE_UNKNOWN = (
    "EventStoreDB did not confirm the deletion, which may or may not have been made: send the "
    "DELETE again (with If-Match: * it finishes a deletion that was made; 404 once it is done)"
)

HALF_DELETED = (
    "the user is deleted, but EventStoreDB did not confirm that its personal data is forgotten: "
    "send the DELETE again (If-Match: *) to finish"
)


def create_unknown(key: str | None, window: float) -> str:
    """How a client finds out whether a registration whose append failed was made."""
    if key is not None:
        return (
            "EventStoreDB did not confirm the registration, which may or may not have been "
            "made: send the same request again with the same Idempotency-Key (or X-Request-ID); "
            "it answers 201 once the user is registered, whether by this attempt or the retry"
        )
    if window > 0:
        return (
            "EventStoreDB did not confirm the registration, which may or may not have been "
            f"made: send the same body again within {window:.0f} s; it answers 201 if this "
            "attempt registered the user (send an Idempotency-Key to make any retry safe)"
        )
    return (
        "EventStoreDB did not confirm the registration, which may or may not have been made: "
        "read the user before you send it again (send an Idempotency-Key to make a retry safe)"
    )


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
        *,
        retry_window: float = 0.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.cache = cache if cache is not None else StreamCache()
        # Seconds within which a registration sent again without a key is a retry (retries.py).
        self.retry_window = retry_window

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
        self, user: UserCreated, correlation_id: str, *, idempotency_key: str | None = None
    ) -> Written:
        """Append `user-created` expecting no stream or, after a deletion, exactly the deletion.

        With `idempotency_key`, the event id is derived from the key, username and full name, so
        the same request sent again answers 201 again; without one, the same body sent again
        soon after is recognised by `retries.repeated_registration`. Before a new life starts, a
        half-done deletion is finished (its `$tb` set), so that nothing of the earlier life stays
        readable.
        """
        own_id = event_id(user, idempotency_key) if idempotency_key is not None else None
        event = new_event(user, correlation_id, own_id)
        stream = stream_name(user.username)
        unknown = create_unknown(idempotency_key, self.retry_window)
        expected: int | None = None
        for _ in range(CREATE_ATTEMPTS):
            try:
                with _outcome_unknown(unknown):
                    position = self.store.append(stream, expected, event)
            except StreamConflict:
                # Perhaps the stream moved because an earlier attempt of ours was written: until
                # the stream is read, the outcome is unknown.
                with _outcome_unknown(unknown, unsure=True):
                    records = self.store.read(stream)
                ours = find_own(records, event.id)
                if ours is None and idempotency_key is None:
                    ours = repeated_registration(records, user, self.clock(), self.retry_window)
                if ours is not None:
                    return ours
                if not records or records[-1].type != USER_DELETED:
                    raise UsernameTaken(f"username {user.username!r} is taken") from None
                expected = records[-1].stream_position
                with _outcome_unknown(unknown, unsure=True):
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
        written = self._append(stream, change, correlation_id, CHANGE_UNKNOWN)
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
        deleted = UserDeleted(username, self.clock())
        written = self._append(stream, deleted, correlation_id, DELETE_UNKNOWN)
        try:
            self.store.truncate_before(stream_name(username), written.revision)
        except EventStoreUnavailable as exc:
            # The deletion is written: whatever went wrong, a DELETE sent again finishes it.
            raise EventStoreUnavailable(HALF_DELETED) from exc.__cause__
        return written

    def _append(
        self, stream: UserStream, event: UserEvent, correlation_id: str, unknown: str
    ) -> Written:
        """Append expecting the revision the stream was read at; a race is 412 or 404. `unknown`
        tells the client what to do when the outcome cannot be known."""
        new = new_event(event, correlation_id)
        name = stream_name(stream.username)
        expected = stream.revision
        try:
            with _outcome_unknown(unknown):
                position = self.store.append(name, expected, new)
        except StreamConflict:
            with _outcome_unknown(unknown, unsure=True):
                records = self.store.read(name)
            ours = find_own(records, new.id)
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


@contextmanager
def _outcome_unknown(message: str, *, unsure: bool = False) -> Iterator[None]:
    """An append of the block whose outcome is unknown says `message` (how to find out). With
    `unsure`, so does any failure of EventStoreDB in the block: it comes after an append that may
    have been written, and before this request could tell."""
    try:
        yield
    except EventStoreUnavailable as exc:
        if isinstance(exc, AppendOutcomeUnknown) or unsure:
            raise AppendOutcomeUnknown(message) from exc.__cause__
        raise

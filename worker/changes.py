"""The net change a batch of events makes to the read model: at most one delete, one insert and one
update per user, whatever the number of events.

Events are decoded with the contract's one decoder and folded per user, in `$all` order, by the
rules of `usersvc.lifecycle` (whose state before the batch lives in PostgreSQL, not here):
- `user-deleted` → delete the row (and forget what the batch had for the user before it);
- `user-created` → insert a row; if the user already has a live row (a second `user-created`
  written by the original service) the first one wins and only the revision moves;
- `user-full-name-changed` → update the full name of the live row; after a deletion in the same
  batch, nothing.
Every statement carries the revision and position of the user's last event and applies only
above the row's stored revision, so an event applied twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from usersvc.events import (
    FullNameChanged,
    MalformedEvent,
    UserCreated,
    UserDeleted,
    decode_event,
    username_from_stream,
)
from usersvc.records import StoredEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class ChangeError(ValueError):
    """An event of a known type that cannot be applied (see `event` and the message)."""

    def __init__(self, event: StoredEvent, reason: str) -> None:
        super().__init__(reason)
        self.event = event


@dataclass(slots=True)
class Columns:
    """Rows of one statement, column by column (each sent as one JSON array)."""

    usernames: list[str] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)
    event_ids: list[UUID] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    # Only for inserts: microseconds since the Unix epoch (cheaper to send than datetimes).
    created_at: list[int] = field(default_factory=list)
    # For inserts and updates; None in an update keeps the stored name (a revision-only update).
    full_names: list[str | None] = field(default_factory=list)

    def add(self, username: str, last: StoredEvent) -> None:
        self.usernames.append(username)
        self.revisions.append(last.revision)
        self.event_ids.append(last.event_id)
        self.positions.append(last.commit_position)


@dataclass(slots=True)
class _Net:
    delete: StoredEvent | None = None  # the user's last deletion in the batch
    create: StoredEvent | None = None  # a new life after it (or with nothing before it)
    created: UserCreated | None = None
    full_name: str | None = None  # set by a change after `create` (or with no `create`)
    last: StoredEvent | None = None  # the last event after `create` (or with no `create`)


@dataclass(slots=True)
class Changes:
    deletes: Columns
    inserts: Columns
    updates: Columns
    applied: int
    skipped: int


def changes_of(events: Sequence[StoredEvent]) -> Changes:
    """Fold `events` into net changes. Raises `ChangeError` for the first event of a known type
    that is malformed or whose username is not its stream's."""
    nets: dict[str, _Net] = {}
    applied = skipped = 0
    for event in events:
        try:
            decoded = decode_event(event.type, event.data, event.metadata)
        except MalformedEvent as exc:
            raise ChangeError(event, str(exc)) from None
        if decoded is None:
            skipped += 1
            continue
        username = decoded.username
        if username_from_stream(event.stream) != username:
            raise ChangeError(event, f"username {username!r} does not match the stream name")
        applied += 1
        net = nets.get(username)
        if net is None:
            net = nets[username] = _Net()
        match decoded:
            case UserDeleted():
                nets[username] = _Net(delete=event)
            case UserCreated() if net.create is None and net.last is None:
                net.create, net.created = event, decoded
            case UserCreated():
                net.last = event  # a second user-created of a live user: the first one wins
            case FullNameChanged(_, full_name, _) if net.delete is None or net.create is not None:
                net.full_name, net.last = full_name, event
            case FullNameChanged():
                pass  # no user after a deletion: nothing to change
    deletes, inserts, updates = Columns(), Columns(), Columns()
    for username, net in nets.items():
        if net.delete is not None:
            deletes.add(username, net.delete)
        if net.create is not None and net.created is not None:
            # If the user still has a live row (a second user-created), the insert moves only
            # its revision; the update below then brings what followed.
            inserts.add(username, net.create)
            inserts.created_at.append((net.created.opened_at - _EPOCH) // _MICROSECOND)
            inserts.full_names.append(net.created.full_name)
        if net.last is not None:
            updates.add(username, net.last)
            updates.full_names.append(net.full_name)
    return Changes(deletes, inserts, updates, applied, skipped)

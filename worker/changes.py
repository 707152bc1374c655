"""The net change a batch of events makes to the read model: at most one delete, one insert and one
update per user, whatever the number of events.

Events are decoded with the contract's one decoder and folded per user, in `$all` order, by the
rules of `usersvc.lifecycle`. The user's state before the batch lives in PostgreSQL, not here, so
a batch without a deletion is folded both ways and the statements pick the right one by what
they find, in this order:
1. delete: the user's last `user-deleted` removes the row of the life it ends (and what the
   batch had for the user before it is forgotten: the rest is folded from no user);
2. update, for a user who had a live row: the last change of the batch sets the full name (a
   `user-created` in a live life changes nothing: the first one wins);
3. insert, for a user who had no row: the first `user-created` (after the deletion, if any)
   starts a life, with the changes that follow it (changes before it changed no one).
An update that applies moves the row to the batch's last revision, so the insert after it finds
the row and does nothing; an insert that finds a live row with no update (no change in the
batch) moves only its revision. Every statement carries the revision and position of the user's
last event and applies only above the row's stored revision, so an event applied twice changes
nothing.
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
    # Only for inserts: the position of the `user-created` (new rows take their ids in its order).
    created_positions: list[int] = field(default_factory=list)
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
    create: StoredEvent | None = None  # the first user-created after it (or in the batch)
    created: UserCreated | None = None
    new_name: str | None = None  # of a life `create` starts: its own, then the changes after it
    live_name: str | None = None  # with no deletion: the last change, for a user who was live
    last: StoredEvent | None = None  # the last event after `delete` (or in the batch)


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
                continue
            case UserCreated(_, full_name, _) if net.create is None:
                net.create, net.created, net.new_name = event, decoded, full_name
            case UserCreated():
                pass  # a second user-created of a live user: the first one wins
            case FullNameChanged(_, full_name, _):
                if net.create is not None:
                    net.new_name = full_name
                if net.delete is None:
                    net.live_name = full_name
        net.last = event
    deletes, inserts, updates = Columns(), Columns(), Columns()
    for username, net in nets.items():
        if net.delete is not None:
            deletes.add(username, net.delete)
        if net.last is None:
            continue
        if net.delete is None and (net.create is None or net.live_name is not None):
            # A user who was live: the last change (a user with no row ignores the update).
            updates.add(username, net.last)
            updates.full_names.append(net.live_name)
        if net.create is not None and net.created is not None:
            # A user who had no row: the new life. A live one (no change in the batch) keeps
            # its row and takes only the revision of the last event.
            inserts.add(username, net.last)
            inserts.created_at.append((net.created.opened_at - _EPOCH) // _MICROSECOND)
            inserts.created_positions.append(net.create.commit_position)
            inserts.full_names.append(net.new_name)
    return Changes(deletes, inserts, updates, applied, skipped)

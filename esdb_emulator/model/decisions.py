"""The expected-version decision of the real server, for Append, BatchAppend, Delete, Tombstone.

Pure: it looks at a stream's state and the proposal and says write, already written
(idempotent), or refuse. Rules and their order follow the server's commit check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from esdb_emulator.model.errors import StreamDeleted, WrongExpectedVersion

ANY = -2
NO_STREAM = -1
STREAM_EXISTS = -4


@dataclass(frozen=True, slots=True)
class StreamView:
    name: str
    current: int  # last revision written, -1 when never written (truncation ignored)
    tombstoned: bool
    soft_deleted: bool
    metadata_exists: bool
    ids: dict[UUID, int]  # event id -> revision
    revision_ids: Sequence[UUID]  # event id at each revision from `first_revision`
    first_revision: int = 0  # revisions below it were scavenged (their ids are unknown)


@dataclass(frozen=True, slots=True)
class Write:
    pass


@dataclass(frozen=True, slots=True)
class AlreadyWritten:
    last_revision: int


def decide(view: StreamView, expected: int, ids: Sequence[UUID]) -> Write | AlreadyWritten:
    """Raise `StreamDeleted` or `WrongExpectedVersion`, or say what to do."""
    cur = view.current
    if view.tombstoned:
        raise StreamDeleted(view.name)
    if expected == STREAM_EXISTS and view.soft_deleted:
        raise StreamDeleted(view.name)
    if expected == STREAM_EXISTS and cur == -1 and not view.metadata_exists:
        raise WrongExpectedVersion(view.name, expected, -1)
    if expected in (ANY, STREAM_EXISTS):
        return _by_id(view, expected, ids)
    if expected < cur:
        return _by_position(view, expected, ids)
    if expected > cur:
        raise WrongExpectedVersion(view.name, expected, cur)
    return Write()


def _by_id(view: StreamView, expected: int, ids: Sequence[UUID]) -> Write | AlreadyWritten:
    if not ids or ids[0] not in view.ids:
        return Write()
    first = view.ids[ids[0]]
    for offset, event_id in enumerate(ids):
        if view.ids.get(event_id) != first + offset:
            raise WrongExpectedVersion(view.name, expected, view.current)
    return AlreadyWritten(first + len(ids) - 1)


def _by_position(view: StreamView, expected: int, ids: Sequence[UUID]) -> Write | AlreadyWritten:
    if not ids:
        raise WrongExpectedVersion(view.name, expected, view.current)
    for offset, event_id in enumerate(ids):
        revision = expected + 1 + offset
        index = revision - view.first_revision
        matches = index >= 0 and revision <= view.current and view.revision_ids[index] == event_id
        if matches:
            continue
        if offset == 0 and expected == NO_STREAM and view.soft_deleted:
            return Write()
        raise WrongExpectedVersion(view.name, expected, view.current)
    return AlreadyWritten(expected + len(ids))

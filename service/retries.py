"""Recognising a retried write in the stream, so that a client's retry after a lost answer (a
timeout, a `503 append_outcome_unknown`) is told what its first attempt did.

- With an idempotency key (`Idempotency-Key`, or a client-chosen `X-Request-ID`), the event id is
  derived from the key, the username and the full name (a version-5 UUID): the same request sent
  again finds its own event by id, however long after, and gets the same answer.
- Without a key, a registration is recognised as a retry when the stream's last event is a
  `user-created` with the same username and full name, written without a key (a random,
  version-4 id) within `window` seconds. Nothing happened to the user since (no change, no
  deletion), so answering `201` with that event's position tells the client nothing that
  `GET /users/<username>` does not already tell anyone. Two different clients who send the same
  body within the window without keys cannot be told apart: both are told the user exists as they
  asked. An event written under a key answers only to that key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from esdbclient import RecordedEvent

from usersvc.events import USER_CREATED, MalformedEvent, UserCreated, decode_event

log = logging.getLogger(__name__)

_EVENT_ID_NAMESPACE = uuid.UUID("5b0c3a52-6f4e-4f38-9d4e-2f0c6f1a7e10")
# The UUID version of the ids derived from a key (`uuid.uuid5`); random ids are version 4.
KEYED_ID_VERSION = 5


@dataclass(frozen=True, slots=True)
class Written:
    """Where the command's event went (or the last event, when nothing had to be written)."""

    commit_position: int
    revision: int


def event_id(user: UserCreated, key: str) -> uuid.UUID:
    """A stable event id for a client's request: its retries are recognised as the same write."""
    return uuid.uuid5(_EVENT_ID_NAMESPACE, "\n".join((key, user.username, user.full_name)))


def find_own(records: Sequence[RecordedEvent], event_id: uuid.UUID) -> Written | None:
    """Where the event with `event_id` was written, if it is in the stream."""
    for record in reversed(records):
        if record.id == event_id and record.commit_position is not None:
            log.info("append of %s was written by an earlier attempt", record.stream_name)
            return Written(record.commit_position, record.stream_position)
    return None


def repeated_registration(
    records: Sequence[RecordedEvent], user: UserCreated, now: datetime, window: float
) -> Written | None:
    """Where the registration that `user`, sent without a key, repeats was written: the
    stream's last event, when it registered the same username and full name without a key
    within `window` seconds of `now`; else None."""
    if window <= 0 or not records:
        return None
    last = records[-1]
    if last.type != USER_CREATED or last.commit_position is None:
        return None
    if last.id.version == KEYED_ID_VERSION:
        return None
    try:
        created = decode_event(last.type, last.data, last.metadata)
    except MalformedEvent:
        return None
    if not isinstance(created, UserCreated) or (created.username, created.full_name) != (
        user.username,
        user.full_name,
    ):
        return None
    written_at = last.recorded_at or created.opened_at
    if abs((now - written_at).total_seconds()) > window:
        return None
    log.info(
        "the same registration of %s again without a key, %.0f s after it: answered as a retry",
        user.username,
        (now - written_at).total_seconds(),
    )
    return Written(last.commit_position, last.stream_position)

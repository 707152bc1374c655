"""Where a replay or an export stops, and which cutoffs are refused.

The cutoff rule: a replay is always a PREFIX of `$all` (restricted to the stream prefix), so the
result is a read model that really existed.
- `--until-position P` includes the event at P and everything before it.
- `--until-event-id ID` includes that event and everything before it.
- `--until TIME` includes every event up to, not including, the first event whose recorded
  (server) timestamp is later than TIME. Events stamped exactly TIME are included; an event
  stamped earlier than TIME that comes after that first later one is not (timestamps can go
  backwards across a cluster's leader changes; `$all` order is the truth).
- `--from-position P` (and a snapshot's checkpoint) starts strictly after P.

The rule is applied while the events stream past (`take`), in the same single pass that applies
or exports them: a cutoff outside the history (before the first event, after the last, an
unknown event id) raises `ReplayError` as soon as that is known, at the latest at the end of the
source, and the caller discards what it wrote (a replay rolls back its one transaction, an export
removes its partial file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from usersvc.records import StoredEvent


class ReplayError(RuntimeError):
    """A replay or export that must not happen; nothing was written."""


@dataclass(frozen=True)
class ToEnd:
    def describe(self) -> str:
        return "to the end"


@dataclass(frozen=True)
class UntilPosition:
    position: int

    def describe(self) -> str:
        return f"until position {self.position} (inclusive)"


@dataclass(frozen=True)
class UntilTime:
    time: datetime

    def describe(self) -> str:
        return f"until time {self.time.isoformat()} (inclusive)"


@dataclass(frozen=True)
class UntilEventId:
    event_id: UUID

    def describe(self) -> str:
        return f"until event {self.event_id} (inclusive)"


Cutoff = ToEnd | UntilPosition | UntilTime | UntilEventId


def take(
    events: Iterable[StoredEvent],
    cutoff: Cutoff,
    *,
    after: int | None = None,
    allow_empty: bool = False,
) -> Iterator[StoredEvent]:
    """The events of `events` (already strictly after `after`) up to `cutoff`.

    Raises `ReplayError` for a cutoff outside the history, and for a source with no events at
    all unless `allow_empty` (a snapshot that is already up to date) and there is no cutoff.
    """
    previous: StoredEvent | None = None
    latest: datetime | None = None  # the latest timestamp seen, for a TIME past every event
    for event in events:
        match cutoff:
            case UntilPosition(position) if event.commit_position > position:
                if previous is None:
                    raise ReplayError(
                        f"position {position} is before the first event ({event.commit_position})"
                    )
                return
            case UntilTime(time) if event.recorded_at > time:
                if previous is None:
                    raise ReplayError(
                        f"{time.isoformat()} is before the first event "
                        f"(recorded {event.recorded_at.isoformat()})"
                    )
                return
        yield event
        previous = event
        latest = event.recorded_at if latest is None else max(latest, event.recorded_at)
        if isinstance(cutoff, UntilEventId) and event.event_id == cutoff.event_id:
            return
    if previous is None:
        if allow_empty and isinstance(cutoff, ToEnd):
            return
        raise ReplayError(f"there are no events after position {after or 0}")
    match cutoff:
        case UntilPosition(position) if position > previous.commit_position:
            raise ReplayError(
                f"position {position} is after the last event ({previous.commit_position})"
            )
        case UntilTime(time) if latest != time:
            # A TIME equal to the latest stamp is the moment of an event: everything is in.
            raise ReplayError(
                f"{time.isoformat()} is after the last event; "
                "replay without --until to take everything"
            )
        case UntilEventId(event_id):
            raise ReplayError(f"no event with id {event_id} after position {after or 0}")

"""Where a replay or an export stops, and what is refused before anything is written.

The cutoff rule: a replay is always a PREFIX of `$all` (restricted to the stream prefix), so the
result is a read model that really existed.
- `--until-position P` includes the event at P and everything before it.
- `--until-event-id ID` includes that event and everything before it.
- `--until TIME` includes every event up to, not including, the first event whose recorded
  (server) timestamp is later than TIME. Events stamped exactly TIME are included; an event
  stamped earlier than TIME that comes after that first later one is not (timestamps can go
  backwards across a cluster's leader changes; `$all` order is the truth).
- `--from-position P` (and a snapshot's checkpoint) starts strictly after P.
Everything that can be refused is checked before the target is touched: an unreachable source
or target, a cutoff before the first event or after the last, an unknown event id, a damaged
bundle or snapshot, a target that already holds data (unless `--force`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from repro.history import EventSource


class ReplayError(RuntimeError):
    """A replay that must not start; nothing was written."""


@dataclass(frozen=True)
class Cutoff:
    kind: str = "none"  # none | time | position | event_id
    time: datetime | None = None
    position: int | None = None
    event_id: UUID | None = None

    def describe(self) -> str:
        if self.kind == "time":
            return f"until time {self.time.isoformat() if self.time else ''} (inclusive)"
        if self.kind == "position":
            return f"until position {self.position} (inclusive)"
        if self.kind == "event_id":
            return f"until event {self.event_id} (inclusive)"
        return "to the end"


def resolve_cutoff(
    source: EventSource, cutoff: Cutoff, after: int | None, *, allow_empty: bool = False
) -> int | None:
    """The inclusive last position to replay, or None for everything; refuses what is wrong.
    `allow_empty` accepts a source with nothing after `after` when there is no cutoff (a
    snapshot that is already up to date)."""
    first = source.first_position(after)
    if first is None and not (allow_empty and cutoff.kind == "none"):
        raise ReplayError(f"{source.label} has no events after position {after or 0}")
    if first is None or cutoff.kind == "none":
        return None
    if cutoff.kind == "position":
        assert cutoff.position is not None
        last = source.last_position()
        if cutoff.position < first:
            raise ReplayError(f"position {cutoff.position} is before the first event ({first})")
        if last is not None and cutoff.position > last:
            raise ReplayError(f"position {cutoff.position} is after the last event ({last})")
        return cutoff.position
    previous: int | None = None
    latest: datetime | None = None  # the latest timestamp seen, for a TIME past every event
    for event in source.events(after):
        if cutoff.kind == "time":
            assert cutoff.time is not None
            latest = event.recorded_at if latest is None else max(latest, event.recorded_at)
            if event.recorded_at > cutoff.time:
                if previous is None:
                    raise ReplayError(
                        f"{cutoff.time.isoformat()} is before the first event "
                        f"(recorded {event.recorded_at.isoformat()})"
                    )
                return previous
        elif event.event_id == cutoff.event_id:
            return event.commit_position
        previous = event.commit_position
    if cutoff.kind == "time":
        if latest is not None and latest == cutoff.time:
            return previous  # TIME is the moment of an event: everything is included
        raise ReplayError(
            f"{cutoff.time.isoformat() if cutoff.time else ''} is after the "
            "last event; replay without --until to take everything"
        )
    raise ReplayError(f"no event with id {cutoff.event_id} in {source.label}")


def span_of(source: EventSource, after: int | None, until: int | None) -> tuple[int, int] | None:
    """The positions the replay covers, for an ETA when the number of events is not known."""
    if until is None and source.total is not None:
        return None
    first = source.first_position(after)
    last = until if until is not None else source.last_position()
    return None if first is None or last is None else (first, last)

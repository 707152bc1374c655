"""`usersvc events check`: can the code of this checkout read every stored event of the users?

Every event of the user streams, in `$all` order, from EventStoreDB or a bundle, goes through the
contract's one decoder (`usersvc.events.decode_event`, with its upcasters), as the worker, replay,
history and time travel will read it, and must name the user of its stream. The check stops at
the first event it cannot read and names it (position, stream, type, revision, reason); else it
counts what it read by type and schema version. Run it with a new version before deploying it,
against production history or a bundle of it.

What is checked is what usersvc still reads: events of other types are counted and skipped (the
projection skips them by design), and events truncated by a deletion are not read, as export
and replay do not read them (`repro.forgetting`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from repro.history import EventSource
from repro.progress import Progress
from usersvc.events import (
    MalformedEvent,
    decode_event,
    event_type,
    schema_version_of,
    username_from_stream,
)
from usersvc.records import StoredEvent


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The first event the current code cannot read, and why."""

    position: int
    stream: str
    type: str
    revision: int
    reason: str

    def describe(self) -> str:
        return (
            f"event at commit position {self.position} in stream {self.stream!r}"
            f" (type {self.type}, revision {self.revision}) cannot be read: {self.reason}"
        )


@dataclass(slots=True)
class CheckSummary:
    source: str
    read: Counter[tuple[str, int]] = field(default_factory=Counter)  # (type, schema version)
    skipped: int = 0  # events of other types
    first_position: int | None = None
    last_position: int | None = None
    seconds: float = 0.0
    unreadable: Unreadable | None = None

    @property
    def passed(self) -> bool:
        return self.unreadable is None

    @property
    def count(self) -> int:
        return sum(self.read.values())

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{t} v{v}: {n}" for (t, v), n in sorted(self.read.items()))
        rate = (self.count + self.skipped) / self.seconds if self.seconds else 0.0
        return [
            f"source:   {self.source}",
            f"events:   {self.count} read ({kinds or 'none'}), "
            f"{self.skipped} of other types skipped",
            f"range:    positions {self.first_position} .. {self.last_position}",
            f"duration: {self.seconds:.2f} s ({rate:,.0f} events/s)",
        ]


def read(event: StoredEvent) -> tuple[str, int] | Unreadable | None:
    """What the current code reads in `event`: its type and schema version, None for an event
    of another type, or why it cannot read it."""
    try:
        decoded = decode_event(event.type, event.data, event.metadata)
        if decoded is None:
            return None
        if username_from_stream(event.stream) == decoded.username:
            return (event_type(decoded), schema_version_of(event.metadata))
        reason = f"username {decoded.username!r} does not match the stream name"
    except MalformedEvent as exc:
        reason = str(exc)
    return Unreadable(event.commit_position, event.stream, event.type, event.revision, reason)


def check_events(source: EventSource) -> CheckSummary:
    """Decode every event of `source` up to the first one that cannot be read.

    Raises `SourceUnavailable` when the source cannot be read (a damaged bundle included).
    """
    summary = CheckSummary(source.label)
    with Progress("events check", span=source.span(None)) as bar:
        for event in source.events(None):
            outcome = read(event)
            if isinstance(outcome, Unreadable):
                summary.unreadable = outcome
                break
            if summary.first_position is None:
                summary.first_position = event.commit_position
            summary.last_position = event.commit_position
            if outcome is None:
                summary.skipped += 1
            else:
                summary.read[outcome] += 1
            bar.update(1, event.commit_position)
        summary.seconds = bar.elapsed
    return summary

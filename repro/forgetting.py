"""Forgetting in the copies usersvc makes from `$all`: its own readers honour stream truncation.

A deletion appends `user-deleted` and sets the stream's `$tb` (truncate before) to its revision
(DESIGN §2). Stream reads stop showing the events below it at once, but a real EventStoreDB keeps
them readable in `$all` until a scavenge, and export and replay read `$all`: they honour `$tb`
themselves, so that no copy made after a deletion holds the user's personal data.

- Before the copy, one read of `$all` filtered by event type takes every stream-metadata event
  (`$metadata`, in the stream `$$<stream>`) and every tombstone (`$streamDeleted`) of the prefix's
  streams: the last metadata of a stream gives its `$tb`; a tombstone truncates everything before
  it. A soft-deleted stream (`$tb` at the largest revision) loses all its events.
- While copying, an event below its stream's truncation is dropped (`Truncations.keep`); the
  first revision copied of each stream is remembered.
- After the copy, the metadata written since the first read is read again
  (`Truncations.recheck`): a stream truncated meanwhile above a revision already copied (a
  deletion during a long export or replay) fails the copy, and the caller discards what it wrote.

Decided: `$maxCount` and `$maxAge` are not applied, only named in a warning. usersvc never sets
them; they are retention, not forgetting; and their effect depends on the moment of reading
(`$maxAge`) and on the stream's length at that moment (`$maxCount`), so a replay of the same range
would no longer give the same read model twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from usersvc.records import StoredEvent

log = logging.getLogger(__name__)

METADATA_TYPE = "$metadata"
TOMBSTONE_TYPE = "$streamDeleted"
# Event types a `$all` read filtered by type takes to learn the truncations (regex, anchored by
# esdbclient as `^(...)$`).
TRUNCATION_TYPES = (r"\$metadata", r"\$streamDeleted")
RETENTION_KEYS = ("$maxCount", "$maxAge")


class ForgottenDuringRead(RuntimeError):
    """A stream was truncated while it was being copied, after some of its events were copied."""


@dataclass(frozen=True, slots=True)
class Change:
    """The truncation a metadata event or a tombstone sets for `stream` (None: none)."""

    stream: str
    before: int | None
    retention: bool = False  # the metadata also sets `$maxCount` or `$maxAge`
    tombstone: bool = False


def change_of(event: StoredEvent, prefix: str) -> Change | None:
    """What `event` (a metadata event or a tombstone) says about a stream of `prefix`; None for
    an event about another stream."""
    if event.type == TOMBSTONE_TYPE and event.stream.startswith(prefix):
        return Change(event.stream, event.revision, tombstone=True)
    if event.type != METADATA_TYPE or not event.stream.startswith("$$" + prefix):
        return None
    try:
        metadata = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict):
        return Change(event.stream[2:], None)
    before = metadata.get("$tb")
    valid = isinstance(before, int) and not isinstance(before, bool) and before > 0
    retention = any(key in metadata for key in RETENTION_KEYS)
    return Change(event.stream[2:], before if valid else None, retention)


class Truncations:
    """Each stream's truncation as read so far, and the first revision copied of each stream."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.before: dict[str, int] = {}
        self.copied: dict[str, int] = {}
        self.retained: set[str] = set()
        self._tombstoned: set[str] = set()

    def learn(self, events: Iterable[StoredEvent]) -> None:
        """Take the truncations `events` (metadata events and tombstones, in `$all` order) set."""
        for event in events:
            change = change_of(event, self.prefix)
            if change is not None:
                self._apply(change)
        if self.retained:
            names = sorted(self.retained)
            log.warning(
                "%d stream(s) set $maxCount or $maxAge (e.g. %s); copies honour only $tb and"
                " tombstones, so events those settings hide from stream reads are copied",
                len(names),
                ", ".join(names[:3]),
            )

    def keep(self, event: StoredEvent) -> bool:
        """False for an event below its stream's truncation; remembers what is kept."""
        stream = event.stream
        before = self.before.get(stream)
        if before is not None and event.revision < before:
            return False
        if stream not in self.copied:
            self.copied[stream] = event.revision
        return True

    def recheck(self, events: Iterable[StoredEvent]) -> None:
        """Take the truncations set since `learn` read; raise `ForgottenDuringRead` if one of
        them covers an event already kept."""
        for event in events:
            change = change_of(event, self.prefix)
            if change is None:
                continue
            self._apply(change)
            first = self.copied.get(change.stream)
            if first is not None and change.before is not None and first < change.before:
                raise ForgottenDuringRead(
                    f"stream {change.stream!r} was truncated before revision {change.before}"
                    f" (a deletion) while it was being read, after its revision {first} had"
                    " been copied: run it again"
                )

    def _apply(self, change: Change) -> None:
        if change.stream in self._tombstoned:
            return  # a tombstoned stream stays deleted whatever its metadata says later
        if change.tombstone:
            self._tombstoned.add(change.stream)
        if change.before is None:
            self.before.pop(change.stream, None)
        else:
            self.before[change.stream] = change.before
        if change.retention:
            self.retained.add(change.stream)
        else:
            self.retained.discard(change.stream)

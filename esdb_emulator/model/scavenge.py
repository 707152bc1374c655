"""What a scavenge keeps: the real server's rules (its scavenger of 21.10 and later) applied to
every record written before the scavenge began.

In a stream, everything below a discard point goes: the events before `$tb` (all of a soft-deleted
stream's), those beyond `$maxCount`, those older than `$maxAge` (from the start of the stream up
to the first event young enough), and every event of a tombstoned stream but its tombstone. The
last event of a stream is always kept, so that its revision stays known and appends continue it.
A metastream keeps only its last event (the metadata in force), and nothing once its stream is
tombstoned. What is kept keeps its position, revision, id and order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from esdb_emulator.model import metadata as meta
from esdb_emulator.model.ledger import Ledger
from esdb_emulator.model.records import MAX_REVISION, Record

TICKS_PER_SECOND = 10_000_000


@dataclass(frozen=True, slots=True)
class ScavengeReport:
    scanned: int  # records written before the scavenge began
    removed: int
    bytes_before: int  # of the data files (0 in memory)
    bytes_after: int

    @property
    def space_saved(self) -> int:
        return self.bytes_before - self.bytes_after


def first_kept(ledger: Ledger, stream: str, now: int) -> int:
    """The lowest revision of `stream` a scavenge at `now` (ticks) keeps; a tombstone, at
    `MAX_REVISION`, is always kept."""
    state = ledger.stream(stream)
    if state is None:
        return 0
    last = state.next_revision - 1
    if meta.is_metastream(stream):
        base = ledger.stream(stream[2:])
        return MAX_REVISION if base is not None and base.tombstone is not None else last
    if state.tombstone is not None:
        return MAX_REVISION
    metadata = ledger.metadata(stream)
    point = meta.first_visible(stream, metadata, state.next_revision)
    max_age = meta.max_age_seconds(metadata)
    if max_age is not None:
        cutoff = now - max_age * TICKS_PER_SECOND
        for record in state.between(point, last):
            if record.created >= cutoff:
                break
            point = record.revision + 1
    return min(point, last)


def survivors(ledger: Ledger, records: Iterable[Record], now: int) -> list[Record]:
    """The records of `records` (in `$all` order) that a scavenge at `now` keeps, in order."""
    low: dict[str, int] = {}
    kept = []
    for record in records:
        first = low.get(record.stream)
        if first is None:
            first = low[record.stream] = first_kept(ledger, record.stream, now)
        if record.revision >= first:
            kept.append(record)
    return kept

"""What readers see of the store: durable records of `$all` and of streams, and the stream
metadata rules reads apply. `store.Store` adds the writes."""

from __future__ import annotations

import bisect
import threading

import orjson

from esdb_emulator.errors import StreamDeleted
from esdb_emulator.model import HIDDEN_FROM_ALL, StreamNotFound, StreamState, metastream, ticks_now
from esdb_emulator.records import MAX_REVISION, Record


class StoreState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self._all: list[Record] = []
        self._positions: list[int] = []
        self._streams: dict[str, StreamState] = {}
        # Records of `$all` below this index are durable; only they are visible to readers.
        self._durable = 0
        self._durable_position = 0

    @property
    def head(self) -> int:
        with self._lock:
            return self._durable

    def read_stream(
        self, stream: str, revision: int | None, backwards: bool, count: int
    ) -> list[Record]:
        """Raise `StreamNotFound` or `StreamDeleted`; `revision` None means start (or end)."""
        with self._lock:
            self._check_readable(stream)
            state = self._streams.get(stream)
            if state is None or not state.records or self._soft_deleted(stream):
                raise StreamNotFound(stream)
            records = self._durable_part(state.records)
            if not records:
                raise StreamNotFound(stream)
            low = self._first_visible(stream, records)
            if backwards:
                top = len(records) - 1 if revision is None else min(revision, len(records) - 1)
                stop = max(low, top - count + 1) if count < len(records) else low
                selected = records[stop : top + 1][::-1]
            else:
                start = max(low, revision or 0)
                selected = records[start : start + count] if start < len(records) else []
        max_age = self._max_age(stream)
        if max_age is not None:
            oldest = ticks_now() - max_age * 10_000_000
            selected = [r for r in selected if r.created >= oldest]
        return selected

    def check_stream_readable(self, stream: str) -> None:
        with self._lock:
            self._check_readable(stream)

    def stream_records(self, stream: str, start_revision: int, limit: int) -> list[Record]:
        """For stream subscriptions: records from `start_revision`, tombstone last if reached."""
        with self._lock:
            state = self._streams.get(stream)
            if state is None:
                return []
            chunk = self._durable_part(state.records[start_revision : start_revision + limit])
            tombstone = state.tombstone
            if (
                len(chunk) < limit
                and tombstone is not None
                and tombstone.position <= self._durable_position
            ):
                chunk.append(tombstone)
            return chunk

    def stream_end(self, stream: str) -> int:
        """The next revision of `stream` (its length)."""
        with self._lock:
            state = self._streams.get(stream)
            return len(self._durable_part(state.records)) if state else 0

    def all_slice(self, start: int, limit: int) -> list[Record]:
        """Records of `$all` by index (index, not position), for scans and subscriptions."""
        with self._lock:
            return self._all[start : min(start + limit, self._durable)]

    def index_of_position(self, position: int) -> int:
        """Index of the first record at or after `position`."""
        with self._lock:
            return bisect.bisect_left(self._positions, position)

    def last_position(self) -> int:
        with self._lock:
            return self._durable_position

    def wait_beyond(self, index: int, timeout: float) -> bool:
        """Block until `$all` has more than `index` records, or `timeout` passes."""
        with self.changed:
            if self._durable > index:
                return True
            self.changed.wait(timeout)
            return self._durable > index

    @staticmethod
    def visible_in_all(record: Record) -> bool:
        return record.stream != HIDDEN_FROM_ALL

    def _durable_part(self, records: list[Record]) -> list[Record]:
        """The prefix of a stream's records that is durable (caller holds the lock)."""
        end = len(records)
        while end and records[end - 1].position > self._durable_position:
            end -= 1
        return records if end == len(records) else records[:end]

    def _next_revision(self, stream: str) -> int:
        state = self._streams.get(stream)
        return len(state.records) if state else 0

    def _metadata(self, stream: str) -> dict[str, object]:
        meta_state = self._streams.get(metastream(stream))
        if not meta_state or not meta_state.records:
            return {}
        try:
            value = orjson.loads(meta_state.records[-1].data)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def _soft_deleted(self, stream: str) -> bool:
        return self._metadata(stream).get("$tb") == MAX_REVISION

    def _first_visible(self, stream: str, records: list[Record]) -> int:
        if stream.startswith("$$"):
            return len(records) - 1
        meta = self._metadata(stream)
        low = 0
        tb = meta.get("$tb")
        if isinstance(tb, int):
            low = tb
        max_count = meta.get("$maxCount")
        if isinstance(max_count, int) and max_count > 0:
            low = max(low, len(records) - max_count)
        return low

    def _max_age(self, stream: str) -> int | None:
        with self._lock:
            value = self._metadata(stream).get("$maxAge")
        return value if isinstance(value, int) and value > 0 else None

    def _check_readable(self, stream: str) -> None:
        base = stream[2:] if stream.startswith("$$") else stream
        state = self._streams.get(base)
        if state is not None and state.tombstone is not None:
            raise StreamDeleted(stream)

"""Events read on a thread of their own into a bounded buffer, handed out in batches.

One reader serves the live worker (a catch-up subscription to `$all`) and the offline tools (a
replay source): its thread receives and translates events while the pipeline commits the previous
batch, so reading and writing overlap. `next_batch` returns what is waiting, up to `max_size`
events, waiting at most `max_wait` for more once it has something. The end of the source is never
silent: a failure is raised by `next_batch` as `SourceFailed` once everything received before it
was handed out; a finite source's end marks its last batch; an endless source (a subscription)
that ends is a failure too.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from usersvc.records import StoredEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerCheckpoint:
    """The server scanned `$all` up to `position`: nothing of ours lies before it unread."""

    position: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The subscription has delivered everything recorded so far."""


Item = StoredEvent | ServerCheckpoint | CaughtUp


@dataclass
class Batch:
    events: list[StoredEvent] = field(default_factory=list)
    # The newest server checkpoint received with this batch.
    checkpoint: int | None = None
    caught_up: bool = False
    # A finite source has nothing after this batch.
    last: bool = False


class SourceFailed(RuntimeError):
    """Reading failed (see __cause__), or an endless source ended without being stopped."""


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None


class Reader:
    """Reads `items` on its own thread; `close` stops it (and calls `cancel` to unblock it)."""

    def __init__(
        self,
        items: Iterable[Item],
        *,
        capacity: int,
        endless: bool,
        cancel: Callable[[], None] = lambda: None,
        name: str = "reader",
    ) -> None:
        self._items = items
        self._endless = endless
        self._cancel = cancel
        self._capacity = max(1, capacity)
        self._buffer: deque[Item | _End] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        # How many items the consumer waits for before it wants to be woken (it takes them all).
        self._wanted = 1
        self._closed = False
        self._end: _End | None = None
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def next_batch(self, max_size: int, max_wait: float, timeout: float) -> Batch | None:
        """The events waiting now (up to `max_size`); None if nothing came within `timeout`.

        Raises `SourceFailed` once everything received before a failure was handed out.
        """
        if self._end is not None:
            self._raise_end()
        batch = Batch()
        with self._lock:
            if not self._wait_for(1, time.monotonic() + timeout):
                return None
            gather_until = time.monotonic() + max_wait
            while True:
                self._take(batch, max_size)
                self._not_full.notify()
                if self._end is not None or len(batch.events) >= max_size:
                    break
                if not self._wait_for(max_size - len(batch.events), gather_until):
                    self._take(batch, max_size)
                    self._not_full.notify()
                    break
        if self._end is not None:
            if self._end.error is None and not self._endless:
                batch.last = True
            elif not batch.events and batch.checkpoint is None and not batch.caught_up:
                self._raise_end()
        return batch

    def close(self) -> None:
        """Stop reading and wait for the thread (a few seconds at most)."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
        try:
            self._cancel()
        except Exception:  # a failed cancel of a call that is going away anyway
            log.debug("cancelling the source failed", exc_info=True)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("the %s thread did not stop within 5 s", self._thread.name)

    def _wait_for(self, count: int, deadline: float) -> bool:
        """With the lock held: wait until `count` items (or the end) are buffered, or `deadline`.
        True when at least one item is there."""
        self._wanted = count
        while len(self._buffer) < count and not self._ends_buffered():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._not_empty.wait(None if remaining == math.inf else remaining)
        self._wanted = 1
        return bool(self._buffer)

    def _ends_buffered(self) -> bool:
        return bool(self._buffer) and isinstance(self._buffer[-1], _End)

    def _take(self, batch: Batch, max_size: int) -> None:
        buffer = self._buffer
        events = batch.events
        while buffer and len(events) < max_size:
            item = buffer.popleft()
            if isinstance(item, StoredEvent):
                events.append(item)
            elif isinstance(item, ServerCheckpoint):
                batch.checkpoint = item.position
            elif isinstance(item, CaughtUp):
                batch.caught_up = True
            else:
                self._end = item
                return

    def _raise_end(self) -> None:
        assert self._end is not None
        error = self._end.error
        if error is None:
            raise SourceFailed("the source ended without being stopped")
        raise SourceFailed(f"reading failed: {type(error).__name__}: {error}") from error

    def _read(self) -> None:
        end = _End(None)
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            end = _End(exc)
        self._put(end)

    def _put(self, item: Item | _End) -> bool:
        with self._lock:
            while len(self._buffer) >= self._capacity and not self._closed:
                self._not_full.wait()
            if self._closed:
                return False
            self._buffer.append(item)
            if len(self._buffer) >= self._wanted or isinstance(item, _End):
                self._not_empty.notify()
            return True

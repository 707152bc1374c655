"""A subscription read on its own thread into a bounded queue, taken out in batches.

The reader thread receives and translates events while the projector commits the previous batch,
so the two overlap. `next_batch` returns whatever is waiting (up to `max_size`), waiting at most
`max_wait` for more once it has something. The end of the subscription is never silent: an error
or an unexpected end is raised by `next_batch` after the events received before it were handed out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from esdbclient import RecordedEvent

from usersvc.records import StoredEvent
from worker.subscription import to_stored

log = logging.getLogger(__name__)

# A server checkpoint beyond this cannot be a real position (the real server sends 2**64-1 when it
# has scanned nothing) and would not fit the BIGINT column.
_MAX_POSITION = 2**63 - 1
_PUT_SLICE = 0.1


class SubscriptionEnded(RuntimeError):
    """The subscription stopped delivering: it ended, or receiving failed (see __cause__)."""


class Subscription(Protocol):
    def __iter__(self) -> Iterator[RecordedEvent]: ...

    def stop(self) -> None: ...


@dataclass
class Batch:
    events: list[StoredEvent] = field(default_factory=list)
    # The newest server checkpoint received with this batch: nothing of ours lies before it that is
    # not in this batch or an earlier one.
    checkpoint: int | None = None
    caught_up: bool = False


@dataclass(frozen=True)
class _Checkpoint:
    position: int


@dataclass(frozen=True)
class _CaughtUp:
    pass


@dataclass(frozen=True)
class _End:
    error: BaseException | None


_Item = StoredEvent | _Checkpoint | _CaughtUp | _End


class Feed:
    def __init__(self, subscription: Subscription, *, capacity: int) -> None:
        self._subscription = subscription
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=max(1, capacity))
        self._closed = threading.Event()
        self._end: _End | None = None
        self._thread = threading.Thread(target=self._read, name="worker-feed", daemon=True)
        self._thread.start()

    def next_batch(self, max_size: int, max_wait: float, timeout: float) -> Batch | None:
        """The events waiting now (up to `max_size`); None if nothing came within `timeout`.

        Raises `SubscriptionEnded` once everything received before the end was handed out.
        """
        if self._end is not None:
            self._raise_end(self._end)
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        batch = Batch()
        deadline = time.monotonic() + max_wait
        item: _Item | None = first
        while item is not None:
            if isinstance(item, StoredEvent):
                batch.events.append(item)
            elif isinstance(item, _Checkpoint):
                batch.checkpoint = item.position
            elif isinstance(item, _CaughtUp):
                batch.caught_up = True
            else:
                self._end = item
                break
            if len(batch.events) >= max_size:
                break
            item = self._take(deadline)
        if not batch.events and batch.checkpoint is None and not batch.caught_up:
            assert self._end is not None
            self._raise_end(self._end)
        return batch

    def close(self) -> None:
        """Cancel the subscription and wait for the reader thread."""
        self._closed.set()
        try:
            self._subscription.stop()
        except Exception:  # a failed cancel of a call that is going away anyway
            log.debug("stopping the subscription failed", exc_info=True)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("the subscription reader thread did not stop within 5 s")

    def _take(self, deadline: float) -> _Item | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                return self._queue.get(timeout=remaining)
            except queue.Empty:
                return None

    @staticmethod
    def _raise_end(end: _End) -> None:
        if end.error is None:
            raise SubscriptionEnded("the subscription ended without being stopped")
        raise SubscriptionEnded(f"the subscription failed: {end.error!r}") from end.error

    def _read(self) -> None:
        end = _End(None)
        try:
            for recorded in self._subscription:
                if recorded.is_checkpoint:
                    position = recorded.commit_position
                    if position is None or not 0 < position <= _MAX_POSITION:
                        log.debug("ignoring server checkpoint at %s", position)
                        continue
                    item: _Item = _Checkpoint(position)
                elif recorded.is_caught_up:
                    item = _CaughtUp()
                else:
                    item = to_stored(recorded)
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the projector thread, which raises it
            end = _End(exc)
        if not self._closed.is_set():
            self._put(end)

    def _put(self, item: _Item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_PUT_SLICE)
                return True
            except queue.Full:
                continue
        return False

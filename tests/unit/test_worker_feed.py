"""Batching of a subscription, with an in-memory stand-in for esdbclient's subscription object."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from esdbclient import RecordedEvent
from esdbclient.events import CaughtUp, Checkpoint

from worker.feed import Feed, SubscriptionEnded


def recorded(position: int) -> RecordedEvent:
    return RecordedEvent(
        type="user-created",
        data=b"{}",
        metadata=b"",
        content_type="application/json",
        id=uuid.uuid4(),
        stream_name=f"user-{position}",
        stream_position=0,
        commit_position=position,
        prepare_position=position,
        recorded_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


class FakeSubscription:
    """Yields the items, then blocks until stopped (as a live subscription does), or raises."""

    def __init__(self, items: list[RecordedEvent], *, then: BaseException | None = None) -> None:
        self.items = items
        self.then = then
        self.stopped = threading.Event()
        self.end_after_items = False

    def __iter__(self) -> Iterator[RecordedEvent]:
        yield from self.items
        if self.then is not None:
            raise self.then
        if not self.end_after_items:
            self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def test_events_waiting_together_come_out_as_one_batch_in_order() -> None:
    feed = Feed(FakeSubscription([recorded(p) for p in range(1, 8)]), capacity=100)
    try:
        batch = feed.next_batch(max_size=100, max_wait=0.5, timeout=5)
        assert batch is not None
        positions = [e.commit_position for e in batch.events]
        while len(positions) < 7:
            more = feed.next_batch(max_size=100, max_wait=0.5, timeout=5)
            assert more is not None
            positions += [e.commit_position for e in more.events]
        assert positions == list(range(1, 8))
    finally:
        feed.close()


def test_batches_never_exceed_the_maximum_size() -> None:
    feed = Feed(FakeSubscription([recorded(p) for p in range(1, 11)]), capacity=100)
    try:
        sizes = []
        while sum(sizes) < 10:
            batch = feed.next_batch(max_size=3, max_wait=0.5, timeout=5)
            assert batch is not None
            sizes.append(len(batch.events))
        assert max(sizes) <= 3
    finally:
        feed.close()


def test_nothing_waiting_gives_none_after_the_timeout() -> None:
    feed = Feed(FakeSubscription([]), capacity=10)
    try:
        assert feed.next_batch(max_size=10, max_wait=0.01, timeout=0.05) is None
    finally:
        feed.close()


def test_checkpoints_and_caught_up_ride_along_with_the_batch() -> None:
    items: list[RecordedEvent] = [recorded(1), Checkpoint(50, 50), CaughtUp()]
    feed = Feed(FakeSubscription(items), capacity=10)
    try:
        seen_checkpoint, seen_caught_up, events = None, False, 0
        while not seen_caught_up:
            batch = feed.next_batch(max_size=10, max_wait=0.2, timeout=5)
            assert batch is not None
            events += len(batch.events)
            seen_checkpoint = batch.checkpoint or seen_checkpoint
            seen_caught_up = batch.caught_up
        assert (events, seen_checkpoint) == (1, 50)
    finally:
        feed.close()


@pytest.mark.parametrize("position", [0, 2**64 - 1])
def test_impossible_server_checkpoints_are_ignored(position: int) -> None:
    items: list[RecordedEvent] = [Checkpoint(position, position), CaughtUp()]
    feed = Feed(FakeSubscription(items), capacity=10)
    try:
        batch = feed.next_batch(max_size=10, max_wait=0.2, timeout=5)
        assert batch is not None
        assert batch.checkpoint is None
    finally:
        feed.close()


def test_a_failing_subscription_raises_after_handing_out_what_came_before() -> None:
    feed = Feed(FakeSubscription([recorded(1)], then=ConnectionError("boom")), capacity=10)
    try:
        batch = feed.next_batch(max_size=10, max_wait=0.2, timeout=5)
        assert batch is not None
        assert [e.commit_position for e in batch.events] == [1]
        with pytest.raises(SubscriptionEnded, match="boom"):
            feed.next_batch(max_size=10, max_wait=0.2, timeout=5)
    finally:
        feed.close()


def test_a_subscription_that_just_ends_is_noticed() -> None:
    subscription = FakeSubscription([])
    subscription.end_after_items = True
    feed = Feed(subscription, capacity=10)
    try:
        with pytest.raises(SubscriptionEnded, match="ended"):
            feed.next_batch(max_size=10, max_wait=0.2, timeout=5)
    finally:
        feed.close()


def test_close_stops_a_reader_blocked_on_a_full_queue() -> None:
    subscription = FakeSubscription([recorded(p) for p in range(1, 50)])
    feed = Feed(subscription, capacity=2)
    feed.close()
    assert subscription.stopped.is_set()
    assert not feed._thread.is_alive()

"""The reader: a source read on its own thread, handed out in batches; with a live subscription
(esdbclient's items translated by `worker.subscription`) and with a finite replay source."""

from __future__ import annotations

import pytest
from esdbclient import RecordedEvent
from esdbclient.events import CaughtUp, Checkpoint

from tests.fixtures.events import FakeSubscription, as_recorded, created
from worker import subscription
from worker.reader import Batch, Reader, SourceFailed


def live(fake: FakeSubscription, capacity: int = 100) -> Reader:
    return Reader(subscription.items(fake), capacity=capacity, endless=True, cancel=fake.stop)


def recorded(position: int) -> RecordedEvent:
    return as_recorded(created(position, f"u{position}"))


def drain(reader: Reader, max_size: int, count: int) -> list[Batch]:
    batches: list[Batch] = []
    while sum(len(b.events) for b in batches) < count:
        batch = reader.next_batch(max_size, max_wait=0.5, timeout=5)
        assert batch is not None
        batches.append(batch)
    return batches


def test_events_come_out_in_order_across_batches() -> None:
    reader = live(FakeSubscription([recorded(p) for p in range(1, 8)]))
    try:
        batches = drain(reader, 100, 7)
    finally:
        reader.close()
    assert [e.commit_position for b in batches for e in b.events] == list(range(1, 8))


def test_batches_never_exceed_the_maximum_size() -> None:
    reader = live(FakeSubscription([recorded(p) for p in range(1, 11)]))
    try:
        sizes = [len(b.events) for b in drain(reader, 3, 10)]
    finally:
        reader.close()
    assert max(sizes) == 3


def test_a_full_batch_waits_for_nothing_more() -> None:
    source = [created(p, f"u{p}") for p in range(1, 6)]
    reader = Reader(iter(source), capacity=100, endless=False)
    try:
        # max_wait is an hour: only a full batch or the end can make this return in time.
        batch = reader.next_batch(5, max_wait=3600, timeout=5)
    finally:
        reader.close()
    assert batch is not None
    assert len(batch.events) == 5


def test_nothing_waiting_gives_none_after_the_timeout() -> None:
    reader = live(FakeSubscription([]))
    try:
        assert reader.next_batch(10, max_wait=0.01, timeout=0.05) is None
    finally:
        reader.close()


def test_checkpoints_and_caught_up_ride_along_with_the_events() -> None:
    items: list[RecordedEvent] = [recorded(1), Checkpoint(50, 50), CaughtUp()]
    reader = live(FakeSubscription(items))
    try:
        merged = Batch()
        while not merged.caught_up:
            batch = reader.next_batch(10, max_wait=0.2, timeout=5)
            assert batch is not None
            merged.events += batch.events
            merged.checkpoint = batch.checkpoint or merged.checkpoint
            merged.caught_up = batch.caught_up
    finally:
        reader.close()
    assert ([e.commit_position for e in merged.events], merged.checkpoint) == ([1], 50)


@pytest.mark.parametrize("position", [0, 2**64 - 1])
def test_impossible_server_checkpoints_are_ignored(position: int) -> None:
    reader = live(FakeSubscription([Checkpoint(position, position), CaughtUp()]))
    try:
        batch = reader.next_batch(10, max_wait=0.2, timeout=5)
    finally:
        reader.close()
    assert batch is not None
    assert batch.checkpoint is None


def test_a_failure_is_raised_after_what_came_before_it_was_handed_out() -> None:
    reader = live(FakeSubscription([recorded(1)], then=ConnectionError("boom")))
    try:
        batch = reader.next_batch(10, max_wait=0.2, timeout=5)
        assert batch is not None
        assert [e.commit_position for e in batch.events] == [1]
        with pytest.raises(SourceFailed, match="boom"):
            reader.next_batch(10, max_wait=0.2, timeout=5)
    finally:
        reader.close()


def test_an_endless_source_that_ends_is_a_failure() -> None:
    reader = live(FakeSubscription([], ends=True))
    try:
        with pytest.raises(SourceFailed, match="ended without being stopped"):
            reader.next_batch(10, max_wait=0.2, timeout=5)
    finally:
        reader.close()


def test_a_finite_source_marks_its_last_batch() -> None:
    reader = Reader(iter([created(1, "a"), created(2, "b")]), capacity=10, endless=False)
    try:
        batch = reader.next_batch(10, max_wait=3600, timeout=5)
    finally:
        reader.close()
    assert batch is not None
    assert (len(batch.events), batch.last) == (2, True)


def test_close_stops_a_reader_blocked_on_a_full_buffer() -> None:
    fake = FakeSubscription([recorded(p) for p in range(1, 50)])
    reader = live(fake, capacity=2)
    reader.close()
    assert fake.stopped.is_set()
    assert not reader._thread.is_alive()

"""The emulator's store without gRPC: appends, reads, deletes, metadata, imports, durability."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from esdb_emulator.model import (
    ANY,
    MAX_REVISION,
    NO_STREAM,
    AppendResult,
    BadRequest,
    MaximumAppendSizeExceeded,
    Proposed,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
)
from esdb_emulator.model.wal import WriteAheadLog
from tests.fixtures.esdb_events import imported


def proposed(n: int = 0, type_: str = "Tested", size: int = 0) -> Proposed:
    data = orjson.dumps({"n": n}) if not size else b"x" * size
    return Proposed(uuid.uuid4(), type_, True, data, b"")


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path if request.param == "disk" else None)
    yield opened
    opened.close()


def revisions(store: Store, stream: str, **read: object) -> list[int]:
    options: dict[str, object] = {"revision": None, "backwards": False, "count": 100, **read}
    return [r.revision for r in store.read_stream(stream, **options)]  # type: ignore[arg-type]


def test_a_new_store_starts_with_one_system_event_after_position_zero(store: Store) -> None:
    (first,) = store.all_from(0, 10)
    assert (first.stream, first.type, first.position > 0) == ("$$$scavenges", "$metadata", True)


def test_appends_number_revisions_and_return_the_last_position(store: Store) -> None:
    first = store.append("s", NO_STREAM, [proposed(0)])
    second = store.append("s", 0, [proposed(1), proposed(2)])
    records = store.read_stream("s", None, False, 10)
    assert (first.revision, second.revision, second.position) == (0, 2, records[-1].position)


def test_positions_increase_strictly_across_streams(store: Store) -> None:
    store.append("a", ANY, [proposed(0), proposed(1)])
    store.append("b", ANY, [proposed(2)])
    positions = [r.position for r in store.all_from(0, 100)]
    assert positions == sorted(set(positions))


def test_a_wrong_expected_version_writes_nothing(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed()])
    head = store.head
    with pytest.raises(WrongExpectedVersion):
        store.append("s", 5, [proposed(), proposed()])
    assert store.head == head


def test_an_append_over_the_size_limit_writes_nothing(store: Store) -> None:
    head = store.head
    with pytest.raises(MaximumAppendSizeExceeded):
        store.append("s", ANY, [proposed(size=600_000), proposed(size=600_000)])
    assert store.head == head


def test_an_append_to_an_unnamed_stream_is_a_bad_request(store: Store) -> None:
    with pytest.raises(BadRequest):
        store.append("", ANY, [proposed()])


def test_an_empty_append_writes_nothing_and_returns_no_position(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed()])
    head = store.head
    assert store.append("s", 0, []) == AppendResult(0, None)
    assert store.head == head


def test_re_appending_the_same_events_returns_the_first_result_and_writes_nothing(
    store: Store,
) -> None:
    events = [proposed(0), proposed(1)]
    first = store.append("s", NO_STREAM, events)
    head = store.head
    assert store.append("s", NO_STREAM, events) == first
    assert store.head == head


def test_reads_go_both_ways_from_a_revision_with_a_count(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(6)])
    assert revisions(store, "s", revision=2, count=3) == [2, 3, 4]
    assert revisions(store, "s", revision=4, backwards=True, count=2) == [4, 3]
    assert revisions(store, "s", backwards=True, count=2) == [5, 4]


def test_reading_a_missing_stream_raises_not_found(store: Store) -> None:
    with pytest.raises(StreamNotFound):
        store.read_stream("missing", None, False, 10)


def test_max_count_metadata_hides_older_events(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(5)])
    metadata = Proposed(uuid.uuid4(), "$metadata", True, b'{"$maxCount": 2}', b"")
    store.append("$$s", ANY, [metadata])
    assert revisions(store, "s") == [3, 4]


def test_a_soft_delete_hides_the_stream_but_keeps_its_events_in_all(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(0), proposed(1)])
    store.delete("s", 1)
    with pytest.raises(StreamNotFound):
        store.read_stream("s", None, False, 10)
    assert [r.revision for r in store.all_from(0, 100) if r.stream == "s"] == [0, 1]


def test_an_append_after_a_soft_delete_undeletes_and_continues_the_numbering(
    store: Store,
) -> None:
    store.append("s", NO_STREAM, [proposed(0), proposed(1)])
    store.delete("s", 1)
    store.append("s", NO_STREAM, [proposed(2)])
    assert revisions(store, "s") == [2]
    (metadata,) = store.read_stream("$$s", None, True, 1)
    assert orjson.loads(metadata.data) == {"$tb": 2}


def test_deleting_a_stream_that_never_existed_is_a_wrong_expected_version(store: Store) -> None:
    with pytest.raises(WrongExpectedVersion):
        store.delete("missing", ANY)


def test_a_tombstoned_stream_cannot_be_read(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed()])
    store.tombstone("s", 0)
    with pytest.raises(StreamDeleted):
        store.read_stream("s", None, False, 10)


def test_a_tombstoned_stream_cannot_be_written(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed()])
    store.tombstone("s", ANY)
    with pytest.raises(StreamDeleted):
        store.append("s", ANY, [proposed()])


def test_a_stream_subscription_sees_the_tombstone_last(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(0), proposed(1)])
    store.tombstone("s", 1)
    assert [r.revision for r in store.stream_records("s", 0, 10)] == [0, 1, MAX_REVISION]


def test_imported_events_keep_their_positions_revisions_ids_and_times(store: Store) -> None:
    head = store.last_position()
    events = [imported(head + 1000 * (n + 1), "user-ann", n) for n in range(3)]
    assert store.import_events(events) == 3
    records = store.read_stream("user-ann", None, False, 10)
    assert [(r.position, r.revision, r.event_id, r.created) for r in records] == [
        (e.position, e.revision, e.event_id, 17_145_648_000_000_000) for e in events
    ]


def test_appends_after_an_import_continue_its_streams_and_positions(store: Store) -> None:
    head = store.last_position()
    store.import_events([imported(head + 10_000, "user-ann", 0)])
    result = store.append("user-ann", 0, [proposed()])
    assert result.revision == 1
    assert (result.position or 0) > head + 10_000


def test_an_import_that_does_not_continue_a_stream_writes_nothing(store: Store) -> None:
    head = store.last_position()
    good, gap = imported(head + 100, "a", 0), imported(head + 200, "a", 2)
    with pytest.raises(BadRequest, match="continues at revision 1"):
        store.import_events([good, gap])
    assert store.last_position() == head


def test_an_import_that_skips_revisions_of_a_stream_it_continues_writes_nothing(
    store: Store,
) -> None:
    store.append("a", NO_STREAM, [proposed()])
    head = store.last_position()
    with pytest.raises(BadRequest, match="continues at revision 1"):
        store.import_events([imported(head + 100, "a", 3)])
    assert store.last_position() == head


def test_an_imported_stream_may_begin_after_revision_zero_and_keeps_its_revisions(
    store: Store,
) -> None:
    head = store.last_position()
    store.import_events([imported(head + 100, "cut", 2), imported(head + 200, "cut", 3)])
    assert revisions(store, "cut") == [2, 3]
    assert revisions(store, "cut", backwards=True) == [3, 2]
    assert revisions(store, "cut", revision=0) == [2, 3]
    assert revisions(store, "cut", revision=1, backwards=True) == []
    assert store.stream_end("cut") == 4


def test_appends_continue_a_stream_imported_from_a_later_revision(store: Store) -> None:
    head = store.last_position()
    store.import_events([imported(head + 100, "cut", 2)])
    with pytest.raises(WrongExpectedVersion):
        store.append("cut", 0, [proposed()])
    assert store.append("cut", 2, [proposed()]).revision == 3


def test_a_reopened_store_keeps_a_stream_that_begins_after_revision_zero(tmp_path: Path) -> None:
    store = Store(tmp_path)
    head = store.last_position()
    store.import_events([imported(head + 100, "cut", 5)])
    store.close()
    reopened = Store(tmp_path)
    try:
        assert revisions(reopened, "cut") == [5]
        assert reopened.append("cut", 5, [proposed()]).revision == 6
    finally:
        reopened.close()


def test_an_import_at_or_below_the_head_writes_nothing(store: Store) -> None:
    head = store.last_position()
    with pytest.raises(BadRequest, match="not after"):
        store.import_events([imported(head + 100, "a", 0), imported(head + 100, "b", 0)])
    assert store.last_position() == head


def test_an_import_failing_on_disk_midway_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    head = store.last_position()
    monkeypatch.setattr("esdb_emulator.model.store.IMPORT_FRAME", 2)
    write = WriteAheadLog.write
    frames = iter(range(100))

    def fail_on_the_second_frame(self: WriteAheadLog, records: list[object]) -> None:
        if next(frames) == 1:
            raise OSError("disk full")
        write(self, records)  # type: ignore[arg-type]

    monkeypatch.setattr(WriteAheadLog, "write", fail_on_the_second_frame)
    with pytest.raises(OSError, match="disk full"):
        store.import_events([imported(head + 100 * (n + 1), "user-ann", n) for n in range(5)])
    monkeypatch.undo()
    assert [r.stream for r in store.all_from(0, 100)] == ["$$$scavenges"]
    store.append("other", NO_STREAM, [proposed()])
    store.close()
    reopened = Store(tmp_path)
    try:
        assert [r.stream for r in reopened.all_from(0, 100)] == ["$$$scavenges", "other"]
    finally:
        reopened.close()


def test_a_reopened_store_has_every_record_as_it_was(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append("s", NO_STREAM, [proposed(0), proposed(1)])
    store.tombstone("t", ANY)
    before = store.all_from(0, 100)
    store.close()
    reopened = Store(tmp_path)
    try:
        assert reopened.all_from(0, 100) == before
    finally:
        reopened.close()


def test_waiting_readers_wake_when_a_record_becomes_visible(store: Store) -> None:
    last = store.last_position()
    woke = threading.Event()

    def wait() -> None:
        if store.wait_for(last + 1, timeout=30):
            woke.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    store.append("s", ANY, [proposed()])
    waiter.join(timeout=30)
    assert woke.is_set()

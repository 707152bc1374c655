"""The emulator's scavenge, without gRPC: what it keeps and drops (the real server's rules), that
what it keeps does not move, that the files lose the bytes of what it drops, and that a scavenge
that fails, is stopped or is killed at any point leaves the old data or the new, never a mix."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from esdb_emulator.model import (
    ANY,
    MAX_REVISION,
    NO_STREAM,
    Proposed,
    Record,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
)
from esdb_emulator.model import metadata as meta
from esdb_emulator.model.errors import ScavengeStopped
from esdb_emulator.model.ledger import Ledger
from esdb_emulator.model.scavenger import COMPLETED, LINK, SCAVENGES, STARTED, Scavenger
from esdb_emulator.model.wal import REWRITE_NAME, DataDirectoryInUse, LogRewrite
from tests.fixtures.damaged_logs import data_files
from tests.fixtures.esdb_events import imported
from tests.fixtures.scavenge_crash import POINTS

SECRET = b"Zebulon Quartermaine-Oyelaran"
REPOSITORY = Path(__file__).resolve().parents[3]  # where `tests` is a package


def proposed(n: int = 0, data: bytes | None = None) -> Proposed:
    return Proposed(uuid.uuid4(), "Tested", True, data or orjson.dumps({"n": n}), b"")


def set_metadata(store: Store, stream: str, metadata: dict[str, object]) -> None:
    store.append(meta.metastream(stream), ANY, [meta.metadata_event(metadata)])


def everything(store: Store) -> list[Record]:
    return store.all_from(0, 1_000_000)


def of(records: list[Record], stream: str) -> list[int]:
    return [r.revision for r in records if r.stream == stream]


def identity(record: Record) -> tuple[int, str, int, uuid.UUID]:
    return (record.position, record.stream, record.revision, record.event_id)


def reads(store: Store, stream: str) -> Any:
    """What reads of `stream` show: forwards and backwards, or the refusal."""
    try:
        forwards = store.read_stream(stream, None, False, 1000)
        backwards = store.read_stream(stream, None, True, 1000)
    except (StreamNotFound, StreamDeleted) as exc:
        return type(exc).__name__
    return [identity(r) for r in forwards], [identity(r) for r in backwards]


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path if request.param == "disk" else None)
    yield opened
    opened.close()


def a_history(store: Store) -> list[str]:
    """Streams under every rule a scavenge applies; returns their names."""
    store.append("truncated", NO_STREAM, [proposed(n) for n in range(3)])
    set_metadata(store, "truncated", {"$tb": 2})
    store.append("counted", NO_STREAM, [proposed(n) for n in range(4)])
    set_metadata(store, "counted", {"$maxCount": 2})
    store.append("soft", NO_STREAM, [proposed(n) for n in range(2)])
    store.delete("soft", 1)
    store.append("hard", NO_STREAM, [proposed(n) for n in range(2)])
    set_metadata(store, "hard", {"$maxCount": 5})
    store.tombstone("hard", 1)
    store.append("kept", NO_STREAM, [proposed(n) for n in range(2)])
    set_metadata(store, "kept", {"a": 1})
    set_metadata(store, "kept", {"a": 2})
    return ["truncated", "counted", "soft", "hard", "kept"]


def test_truncated_events_go_and_the_rest_keep_positions_revisions_and_ids(
    store: Store,
) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(3)])
    store.append("other", NO_STREAM, [proposed()])
    set_metadata(store, "s", {"$tb": 2})
    before = everything(store)
    report = store.scavenge()
    after = everything(store)
    assert [identity(r) for r in after] == [
        identity(r) for r in before if not (r.stream == "s" and r.revision < 2)
    ]
    assert (report.scanned, report.removed) == (len(before), 2)


def test_reads_of_every_stream_show_the_same_after_a_scavenge(store: Store) -> None:
    streams = a_history(store)
    names = [*streams, *(meta.metastream(s) for s in streams)]
    before = {name: reads(store, name) for name in names}
    store.scavenge()
    assert {name: reads(store, name) for name in names} == before


def test_a_soft_deleted_stream_keeps_only_its_last_event(store: Store) -> None:
    a_history(store)
    store.scavenge()
    assert of(everything(store), "soft") == [1]


def test_a_tombstoned_stream_keeps_only_its_tombstone_and_loses_its_metadata(
    store: Store,
) -> None:
    a_history(store)
    store.scavenge()
    assert of(everything(store), "hard") == [MAX_REVISION]
    assert of(everything(store), "$$hard") == []


def test_max_count_keeps_the_last_events(store: Store) -> None:
    a_history(store)
    store.scavenge()
    assert of(everything(store), "counted") == [2, 3]


def test_a_metastream_keeps_only_the_metadata_in_force(store: Store) -> None:
    a_history(store)
    store.scavenge()
    (latest,) = [r for r in everything(store) if r.stream == "$$kept"]
    assert (latest.revision, orjson.loads(latest.data)) == (1, {"a": 2})


def test_max_age_drops_old_events_from_the_start_up_to_the_first_young_one(
    store: Store,
) -> None:
    head = store.last_position()
    store.import_events([imported(head + 100 * (n + 1), "aged", n) for n in range(2)])
    store.append("aged", 1, [proposed()])  # now; the imported ones were recorded long ago
    set_metadata(store, "aged", {"$maxAge": 3600})
    store.scavenge()
    assert of(everything(store), "aged") == [2]


def test_the_last_event_stays_even_when_the_truncation_reaches_past_it(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(2)])
    set_metadata(store, "s", {"$tb": 10})
    store.scavenge()
    assert of(everything(store), "s") == [1]


def test_a_stream_without_metadata_loses_nothing(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(3)])
    store.scavenge()
    assert of(everything(store), "s") == [0, 1, 2]


def test_a_second_scavenge_removes_nothing(store: Store) -> None:
    a_history(store)
    store.scavenge()
    before = everything(store)
    assert store.scavenge().removed == 0
    assert everything(store) == before


def test_appends_continue_revisions_and_positions_after_a_scavenge(store: Store) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(3)])
    set_metadata(store, "s", {"$tb": 2})
    head = store.last_position()
    store.scavenge()
    with pytest.raises(WrongExpectedVersion):
        store.append("s", 1, [proposed()])
    result = store.append("s", 2, [proposed()])
    assert (result.revision, (result.position or 0) > head) == (3, True)


def test_reading_all_from_a_position_that_was_scavenged_starts_at_the_next_record(
    store: Store,
) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(3)])
    set_metadata(store, "s", {"$tb": 2})
    gone = next(r for r in everything(store) if r.stream == "s")
    store.scavenge()
    (following,) = store.all_from(gone.position, 1)
    assert (following.stream, following.revision) == ("s", 2)


def test_a_stream_subscription_behind_the_scavenged_part_goes_on_from_what_is_left(
    store: Store,
) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(3)])
    set_metadata(store, "s", {"$tb": 2})
    store.scavenge()
    assert [r.revision for r in store.stream_records("s", 0, 10)] == [2]


def test_records_appended_while_a_scavenge_runs_are_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append("s", NO_STREAM, [proposed(n) for n in range(3)])
    set_metadata(store, "s", {"$tb": 2})
    landed: list[int] = []

    class AppendingMeanwhile(Ledger):
        """The scavenge's new index, which lets a client append while it is filled (the
        scavenge holds no lock then)."""

        def publish(self, records: Iterable[Record]) -> None:
            super().publish(records)
            if not landed:
                landed.append(store.append("late", NO_STREAM, [proposed()]).position or 0)

    monkeypatch.setattr("esdb_emulator.model.store.Ledger", AppendingMeanwhile)
    store.scavenge()
    assert [r.position for r in everything(store) if r.stream == "late"] == landed
    assert of(everything(store), "s") == [2]


def test_a_stopped_scavenge_changes_nothing(store: Store) -> None:
    a_history(store)
    before = everything(store)
    stop = threading.Event()
    stop.set()
    with pytest.raises(ScavengeStopped):
        store.scavenge(stop)
    assert everything(store) == before


# -- on disk -----------------------------------------------------------------------------------


def test_the_files_hold_no_byte_of_what_was_scavenged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append(
        "user-zeb", NO_STREAM, [proposed(data=orjson.dumps({"fullName": SECRET.decode()}))]
    )
    store.append("user-zeb", 0, [proposed()])
    set_metadata(store, "user-zeb", {"$tb": 1})
    assert any(SECRET in content for content in data_files(tmp_path).values())
    store.scavenge()
    store.close()
    assert [name for name, content in data_files(tmp_path).items() if SECRET in content] == []


def test_a_reopened_store_holds_exactly_what_the_scavenge_kept(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a_history(store)
    store.scavenge()
    store.append("after", NO_STREAM, [proposed()])
    kept = everything(store)
    store.close()
    reopened = Store(tmp_path)
    try:
        assert everything(reopened) == kept
    finally:
        reopened.close()


def test_a_scavenge_shrinks_the_log(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a_history(store)
    report = store.scavenge()
    store.close()
    assert report.bytes_after == (tmp_path / "events.log").stat().st_size
    assert report.space_saved > 0


@pytest.mark.parametrize("failing", ["write", "fsync", "rename"])
def test_a_scavenge_failing_on_disk_leaves_the_old_data_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    store = Store(tmp_path)
    a_history(store)
    before = everything(store)

    def fail(*args: object) -> None:
        raise OSError(f"{failing} failed")

    target: tuple[object, str] = {
        "write": (LogRewrite, "write"),
        "fsync": (os, "fsync"),
        "rename": (os, "replace"),
    }[failing]
    monkeypatch.setattr(*target, fail)
    with pytest.raises(OSError, match=f"{failing} failed"):
        store.scavenge()
    monkeypatch.undo()
    assert everything(store) == before
    assert not (tmp_path / REWRITE_NAME).exists()
    store.append("after", NO_STREAM, [proposed()])
    store.close()
    reopened = Store(tmp_path)
    try:
        assert everything(reopened)[:-1] == before
    finally:
        reopened.close()


def test_when_the_directory_cannot_be_synced_after_the_rename_no_write_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash could still bring back the old log; an append acknowledged from the new one
    # could then be lost. Until a restart, reads go on and writes are refused.
    store = Store(tmp_path)
    a_history(store)
    before = everything(store)

    def fail(directory: Path) -> None:
        raise OSError("directory sync failed")

    monkeypatch.setattr("esdb_emulator.model.wal.sync_directory", fail)
    with pytest.raises(OSError, match="directory sync failed"):
        store.scavenge()
    monkeypatch.undo()
    with pytest.raises(OSError, match="no write is accepted until the emulator restarts"):
        store.append("after", NO_STREAM, [proposed()])
    assert everything(store) == before
    store.close()
    reopened = Store(tmp_path)
    try:
        reopened.append("after", NO_STREAM, [proposed()])
    finally:
        reopened.close()


@pytest.mark.parametrize("point", POINTS)
def test_a_scavenge_killed_at_any_point_leaves_the_old_data_or_the_new(
    tmp_path: Path, point: str
) -> None:
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    for directory in (old_dir, new_dir):
        store = Store(directory)
        a_history(store)
        store.close()
    old, new = _records_in(old_dir), _records_after_a_scavenge(new_dir)
    assert old != new
    killed = subprocess.run(
        [sys.executable, "-m", "tests.fixtures.scavenge_crash", str(old_dir), point],
        cwd=REPOSITORY,
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    found = _records_in(old_dir)
    expected = new if point == "after-rename" else old
    assert found == expected
    assert not (old_dir / REWRITE_NAME).exists()


def _records_in(directory: Path) -> list[tuple[str, int, bytes]]:
    """What a store on `directory` holds, by stream, revision and data (ids, positions and times
    differ between two stores written alike)."""
    store = Store(directory)
    try:
        return [(r.stream, r.revision, r.data) for r in everything(store) if r.type != "$metadata"]
    finally:
        store.close()


def _records_after_a_scavenge(directory: Path) -> list[tuple[str, int, bytes]]:
    store = Store(directory)
    store.scavenge()
    store.close()
    return _records_in(directory)


def test_an_unfinished_new_log_is_removed_when_the_store_opens(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a_history(store)
    before = everything(store)
    store.close()
    (tmp_path / REWRITE_NAME).write_bytes(b"ESL1 half a log")
    reopened = Store(tmp_path)
    try:
        assert everything(reopened) == before
        assert not (tmp_path / REWRITE_NAME).exists()
    finally:
        reopened.close()


def test_a_data_directory_is_held_by_one_store_at_a_time(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(DataDirectoryInUse, match=f"process {os.getpid()}"):
        Store(tmp_path)
    store.close()
    Store(tmp_path).close()


# -- the logged scavenge (the server's operation) ----------------------------------------------


def history(store: Store, stream: str) -> list[tuple[str, Any]]:
    records = store.read_stream(stream, None, False, 100)
    return [(r.type, orjson.loads(r.data) if r.is_json else r.data.decode()) for r in records]


def test_a_scavenge_is_logged_where_the_real_server_logs_it(store: Store) -> None:
    a_history(store)
    scavenger = Scavenger(store, "127.0.0.1:2113")
    scavenge_id, started = scavenger.start()
    assert started
    assert scavenger.wait(timeout=60)
    (start, end) = history(store, f"$scavenges-{scavenge_id}")
    assert start == (STARTED, {"scavengeId": scavenge_id, "nodeEndpoint": "127.0.0.1:2113"})
    assert (end[0], end[1]["scavengeId"], end[1]["result"], end[1]["error"]) == (
        COMPLETED,
        scavenge_id,
        "Success",
        None,
    )
    assert history(store, SCAVENGES) == [
        (LINK, f"0@$scavenges-{scavenge_id}"),
        (LINK, f"1@$scavenges-{scavenge_id}"),
    ]


def test_the_scavenge_history_is_kept_thirty_days(store: Store) -> None:
    scavenger = Scavenger(store, "127.0.0.1:2113")
    scavenge_id, _ = scavenger.start()
    assert scavenger.wait(timeout=60)
    ((_, metadata),) = history(store, f"$$$scavenges-{scavenge_id}")
    assert metadata["$maxAge"] == 2592000


def test_a_scavenge_asked_for_while_one_runs_answers_with_the_running_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    scavenge = store.scavenge

    def held(stop: threading.Event | None = None) -> Any:
        gate.wait(60)
        return scavenge(stop)

    monkeypatch.setattr(store, "scavenge", held)
    scavenger = Scavenger(store, "127.0.0.1:2113")
    first = scavenger.start()
    second = scavenger.start()
    gate.set()
    assert scavenger.wait(timeout=60)
    assert (first[1], second) == (True, (first[0], False))


def test_a_stopped_scavenge_is_logged_as_stopped_and_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_history(store)
    before = everything(store)
    gate = threading.Event()
    scavenge = store.scavenge

    def held(stop: threading.Event | None = None) -> Any:
        gate.wait(60)
        return scavenge(stop)

    monkeypatch.setattr(store, "scavenge", held)
    scavenger = Scavenger(store, "127.0.0.1:2113")
    scavenge_id, _ = scavenger.start()
    assert scavenger.stop(scavenge_id)
    gate.set()
    assert scavenger.wait(timeout=60)
    _, (_, end) = history(store, f"$scavenges-{scavenge_id}")
    assert end["result"] == "Stopped"
    assert [identity(r) for r in everything(store)][: len(before)] == [identity(r) for r in before]


def test_stopping_a_scavenge_that_is_not_running_is_refused(store: Store) -> None:
    scavenger = Scavenger(store, "127.0.0.1:2113")
    assert not scavenger.stop(str(uuid.uuid4()))


def test_time_taken_is_written_as_a_dotnet_time_span() -> None:
    from esdb_emulator.model.scavenger import time_taken

    assert time_taken(3723.5) == "01:02:03.5000000"


def test_a_scavenge_failing_on_disk_is_logged_as_errored_and_the_next_one_can_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    try:
        a_history(store)

        def fail(*args: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(LogRewrite, "write", fail)
        scavenger = Scavenger(store, "127.0.0.1:2113")
        scavenge_id, _ = scavenger.start()
        assert scavenger.wait(timeout=60)
        _, (_, end) = history(store, f"$scavenges-{scavenge_id}")
        assert (end["result"], end["error"]) == ("Errored", "disk full")
        monkeypatch.undo()
        assert scavenger.start()[1]
        assert scavenger.wait(timeout=60)
    finally:
        store.close()

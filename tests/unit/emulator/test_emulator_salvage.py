"""Salvage, without gRPC: every whole frame is copied as it was into a new data directory, the
damaged one is never changed, a stream that lost a revision keeps the ones after the gap, new
positions go above everything the damaged log may have handed out, and what cannot be salvaged
is refused before anything is written."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from esdb_emulator.model import ANY, NO_STREAM, Proposed, Record, Store
from esdb_emulator.model.records import EPOCH_STREAM
from esdb_emulator.model.salvage import LeftOut, SalvageRefused, salvage
from esdb_emulator.model.wal import RESERVED_NAME, DataDirectoryInUse, read_reservation
from tests.fixtures.damaged_logs import damage_frame, data_files, tear_last_frame
from tests.fixtures.esdb_events import imported


def proposed(n: int) -> Proposed:
    return Proposed(uuid.uuid4(), "Tested", True, orjson.dumps({"n": n}), b"")


def written(directory: Path, streams: list[str]) -> list[Record]:
    """A store on `directory` with one append per entry of `streams`; its records."""
    store = Store(directory)
    try:
        for n, stream in enumerate(streams):
            store.append(stream, ANY, [proposed(n)])
        return store.all_from(0, 10_000)
    finally:
        store.close()


def test_every_whole_frame_is_copied_as_it_was_and_the_source_is_left_alone(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    records = written(source, [f"s-{n}" for n in range(10)])
    damaged = damage_frame(source, 5)
    files = data_files(source)
    report = salvage(source, target)
    assert data_files(source) == files
    (skipped,) = report.skipped
    assert (skipped.offset, skipped.end, skipped.torn) == (damaged.offset, damaged.end, False)
    assert skipped.after_position == records[4].position
    store = Store(target)
    try:
        kept = [r for r in store.all_from(0, 10_000) if r.stream != EPOCH_STREAM]
    finally:
        store.close()
    assert kept == [r for r in records if r not in damaged.records]
    assert (report.frames, report.events, report.left_out) == (10, 10, [])


def test_a_stream_that_lost_a_revision_keeps_the_revisions_after_the_gap(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    written(source, ["a", "a", "b", "a", "a"])  # frames 1-5 after the first event
    damage_frame(source, 4)  # a's revision 2
    report = salvage(source, target)
    assert report.left_out == [LeftOut("a", 0, 1, 2)]
    store = Store(target)
    try:
        assert [r.revision for r in store.read_stream("a", None, False, 10)] == [3]
        assert store.append("a", 3, [proposed(9)]).revision == 4
    finally:
        store.close()


def test_new_positions_go_above_everything_the_damaged_log_handed_out(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    store = Store(source)
    far = 10**12
    store.import_events([imported(far + 100 * n, f"i-{n}", 0) for n in range(3)])
    store.close()
    reserved = read_reservation(source)
    tear_last_frame(source)  # the imported frame, far above the rest: its positions are gone
    report = salvage(source, target)
    assert report.next_after == reserved
    store = Store(target)
    try:
        position = store.append("new", NO_STREAM, [proposed(0)]).position
    finally:
        store.close()
    assert position is not None
    assert position > far + 200


def test_an_unreadable_reservation_is_reported_and_positions_go_above_the_last_frame(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    records = written(source, ["a", "b"])
    (source / RESERVED_NAME).write_bytes(b"garbage")
    report = salvage(source, target)
    assert (report.reservation_damaged, report.next_after) == (True, records[-1].position)


def test_salvage_refuses_a_source_without_a_log(tmp_path: Path) -> None:
    with pytest.raises(SalvageRefused, match="holds no emulator data"):
        salvage(tmp_path / "none", tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_salvage_refuses_a_target_inside_the_source(tmp_path: Path) -> None:
    written(tmp_path, ["a"])
    with pytest.raises(SalvageRefused, match="which salvage never changes"):
        salvage(tmp_path, tmp_path / "inside")
    assert not (tmp_path / "inside").exists()


def test_salvage_refuses_a_source_an_emulator_holds(tmp_path: Path) -> None:
    source = tmp_path / "source"
    store = Store(source)
    try:
        with pytest.raises(DataDirectoryInUse):
            salvage(source, tmp_path / "target")
    finally:
        store.close()
    assert not (tmp_path / "target").exists()

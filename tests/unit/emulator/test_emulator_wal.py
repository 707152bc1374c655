"""The write-ahead log: frames round-trip, a torn or corrupt tail is cut off, damage before the
tail is refused and changes nothing, preallocated zeros end the data, `truncate` forgets what
came after a mark, and positions are reserved ahead of the frames."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from esdb_emulator.model import MAX_REVISION, Record
from esdb_emulator.model.frames import Frame
from esdb_emulator.model.wal import (
    FILE_NAME,
    RESERVE_STEP,
    RESERVED_NAME,
    LogDamaged,
    WriteAheadLog,
    read_reservation,
)
from tests.fixtures.damaged_logs import frames


def record(position: int, revision: int = 0, stream: str = "s", **fields: object) -> Record:
    values: dict[str, object] = {
        "position": position,
        "stream": stream,
        "revision": revision,
        "event_id": uuid.uuid4(),
        "type": "Tested",
        "is_json": True,
        "data": b'{"n":1}',
        "metadata": b"",
        "created": 17_000_000_000_000_000,
        **fields,
    }
    return Record(**values)  # type: ignore[arg-type]


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[WriteAheadLog]:
    log = WriteAheadLog(tmp_path)
    list(log.replay())
    yield log
    log.close()


def reopened(path: Path) -> list[list[Record]]:
    log = WriteAheadLog(path)
    try:
        return list(log.replay())
    finally:
        log.close()


def after_a_crash(path: Path) -> list[list[Record]]:
    """What a new process reads of the log a process that is still writing it (or died without
    closing it) has left: a copy of its file, read in a directory no one holds."""
    copy = path / "crashed"
    copy.mkdir()
    shutil.copyfile(path / FILE_NAME, copy / FILE_NAME)
    return reopened(copy)


def test_frames_come_back_as_written(wal: WriteAheadLog, tmp_path: Path) -> None:
    first = [
        record(1024, 0, stream="ünïcode-stream", data=b"\x00\xff", is_json=False),
        record(1100, 1, metadata=b'{"m":1}'),
    ]
    second = [record(1200, MAX_REVISION, type="$streamDeleted", data=b"")]
    wal.write(first)
    wal.write(second)
    wal.sync()
    assert after_a_crash(tmp_path) == [first, second]


def test_a_torn_tail_is_cut_off_and_writing_continues_after_the_last_whole_frame(
    wal: WriteAheadLog, tmp_path: Path
) -> None:
    kept = [record(1024)]
    wal.write(kept)
    wal.close()
    with (tmp_path / FILE_NAME).open("ab") as file:
        file.write(b"ESL1\xff\x00\x00\x00torn")
    log = WriteAheadLog(tmp_path)
    assert list(log.replay()) == [kept]
    later = [record(1100, 1)]
    log.write(later)
    log.close()
    assert reopened(tmp_path) == [kept, later]


def test_a_frame_failing_its_checksum_ends_the_log(wal: WriteAheadLog, tmp_path: Path) -> None:
    kept, damaged = [record(1024)], [record(1100, 1)]
    wal.write(kept)
    size = wal.size
    wal.write(damaged)
    wal.close()
    content = bytearray((tmp_path / FILE_NAME).read_bytes())
    content[-1] ^= 0xFF
    (tmp_path / FILE_NAME).write_bytes(bytes(content))
    assert reopened(tmp_path) == [kept]
    assert (tmp_path / FILE_NAME).stat().st_size == size


def test_preallocated_zeros_end_the_data(wal: WriteAheadLog, tmp_path: Path) -> None:
    wal.write([record(1024)])
    wal.sync()
    assert (tmp_path / FILE_NAME).stat().st_size > wal.size  # preallocated beyond the data
    assert len(after_a_crash(tmp_path)) == 1


def test_truncate_forgets_the_frames_after_a_mark(wal: WriteAheadLog, tmp_path: Path) -> None:
    kept = [record(1024)]
    wal.write(kept)
    mark = wal.size
    wal.write([record(1100, 1)])
    wal.truncate(mark)
    later = [record(1200, 1)]
    wal.write(later)
    wal.close()
    assert reopened(tmp_path) == [kept, later]


def test_close_gives_back_the_preallocated_space(wal: WriteAheadLog, tmp_path: Path) -> None:
    wal.write([record(1024)])
    size = wal.size
    wal.close()
    assert (tmp_path / FILE_NAME).stat().st_size == size


def three_frames(wal: WriteAheadLog) -> list[list[Record]]:
    written = [[record(1024)], [record(1100, 1)], [record(1200, 2)]]
    for frame in written:
        wal.write(frame)
    wal.close()
    return written


def change(path: Path, offset: int, new: bytes) -> None:
    with (path / FILE_NAME).open("r+b") as file:
        file.seek(offset)
        file.write(new)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda frame: (frame.offset + 20, b"\xff"), id="a byte of the payload"),
        pytest.param(lambda frame: (frame.offset, bytes(12)), id="a zeroed header"),
        pytest.param(lambda frame: (frame.offset + 4, b"\xff\xff\xff\x7f"), id="its length"),
    ],
)
def test_a_damaged_frame_with_a_whole_frame_after_it_is_refused_and_nothing_changes(
    wal: WriteAheadLog, tmp_path: Path, damage: Callable[[Frame], tuple[int, bytes]]
) -> None:
    three_frames(wal)
    second = frames(tmp_path)[1]
    change(tmp_path, *damage(second))
    content = (tmp_path / FILE_NAME).read_bytes()
    for _ in range(2):  # a refused log lets go of its directory: the next open is refused alike
        with pytest.raises(LogDamaged, match=f"damaged at byte offset {second.offset} ") as refused:
            reopened(tmp_path)
        assert (refused.value.offset, refused.value.path) == (second.offset, tmp_path / FILE_NAME)
    assert (tmp_path / FILE_NAME).read_bytes() == content


def test_a_last_frame_cut_short_is_a_torn_tail(wal: WriteAheadLog, tmp_path: Path) -> None:
    written = three_frames(wal)
    last = frames(tmp_path)[-1]
    os.truncate(tmp_path / FILE_NAME, last.end - 3)
    assert reopened(tmp_path) == written[:-1]
    assert (tmp_path / FILE_NAME).stat().st_size == last.offset


def test_writing_reserves_positions_ahead_of_the_frames(wal: WriteAheadLog, tmp_path: Path) -> None:
    wal.write([record(1024)])
    assert read_reservation(tmp_path) == 1024 + RESERVE_STEP
    wal.write([record(1024 + RESERVE_STEP)])
    assert read_reservation(tmp_path) == 1024 + RESERVE_STEP
    wal.write([record(1025 + RESERVE_STEP)])
    assert read_reservation(tmp_path) == 1025 + 2 * RESERVE_STEP


def test_an_unreadable_reservation_is_refused(wal: WriteAheadLog, tmp_path: Path) -> None:
    wal.write([record(1024)])
    wal.close()
    (tmp_path / RESERVED_NAME).write_bytes(b"ESR1" + bytes(8))
    with pytest.raises(LogDamaged, match=f"{RESERVED_NAME} is damaged"):
        reopened(tmp_path)

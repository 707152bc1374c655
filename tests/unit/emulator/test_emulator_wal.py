"""The write-ahead log: frames round-trip, a torn or corrupt tail is cut off, preallocated zeros
end the data, and `truncate` forgets what came after a mark."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from esdb_emulator.model import MAX_REVISION, Record
from esdb_emulator.model.wal import FILE_NAME, WriteAheadLog


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

"""Hostile bundles: whatever a file declares or holds, reading it ends in a `BundleError` that
says why, and holds no more memory than reading a valid bundle."""

from __future__ import annotations

import contextlib
import random
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from repro.bundle import BundleError, BundleWriter, read_bundle, read_manifest, verify_bundle
from repro.bundle_cat import cat_lines
from repro.bundle_format import EVENT, EVENT_HEADER, FRAME, MANIFEST, MAX_JSON_FRAME
from repro.bundle_reader import CHUNK
from tests.fixtures.bundles import (
    FIRST_FRAME,
    assemble,
    frame,
    frames,
    raw_content,
    rewrite,
    write_expanding,
)
from usersvc.records import StoredEvent

START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
COUNT = 50
HUGE = 1536 << 20  # 1.5 GiB
# Every way of reading a bundle: decoding, checking only, decoding up to a cutoff and checking
# the rest, and `bundle cat`.
READERS: dict[str, Callable[[Path], Any]] = {
    "read": lambda path: list(read_bundle(path)),
    "verify": verify_bundle,
    "read until the first event": lambda path: list(read_bundle(path, until=1000)),
    "cat": lambda path: list(cat_lines(path)),
}


def events(count: int) -> list[StoredEvent]:
    return [
        StoredEvent(
            commit_position=1000 + i * 100,
            stream=f"user-h{i}",
            revision=0,
            event_id=uuid.UUID(int=i + 1),
            type="user-created",
            data=orjson.dumps({"username": f"h{i}", "fullName": f"Person {i}"}),
            metadata=b'{"schemaVersion":1}',
            content_type="application/json",
            recorded_at=START + timedelta(seconds=i),
        )
        for i in range(count)
    ]


@pytest.fixture
def content(tmp_path: Path) -> bytes:
    """The decompressed content of a valid bundle of COUNT events."""
    path = tmp_path / "valid.bundle"
    with BundleWriter(path, {"source": "test"}) as writer:
        for event in events(COUNT):
            writer.write(event)
    return raw_content(path)


def records_of(content: bytes) -> list[bytes]:
    return [payload for kind, payload in frames(content) if kind == EVENT]


def with_position(record: bytes, position: int) -> bytes:
    return struct.pack("<Q", position) + record[8:]


def declaring(content: bytes, index: int, length: int) -> bytes:
    """`content` with the length field of frame `index` (0 is the manifest) set to `length`."""
    offset = FIRST_FRAME
    for _ in range(index % len(frames(content))):
        offset += FRAME.size + FRAME.unpack_from(content, offset)[1]
    changed = bytearray(content)
    struct.pack_into("<I", changed, offset + 1, length)
    return bytes(changed)


def test_a_manifest_declaring_more_than_a_manifest_may_hold_is_refused_unread(
    content: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "m.bundle"
    rewrite(path, declaring(content, 0, HUGE))
    with pytest.raises(BundleError, match=r"its manifest declares 1,610,612,736 bytes, more than"):
        read_manifest(path)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("index", "what"), [(11, "event 11"), (-1, "its trailer")], ids=["event", "trailer"]
)
def test_a_frame_declaring_more_than_its_kind_may_hold_is_refused_unread(
    content: bytes, tmp_path: Path, reader: str, index: int, what: str
) -> None:
    path = tmp_path / "f.bundle"
    rewrite(path, declaring(content, index, HUGE))
    with pytest.raises(BundleError, match=rf"{what} declares 1,610,612,736 bytes, more than"):
        READERS[reader](path)


def test_a_small_file_that_expands_into_a_huge_event_is_refused_without_holding_it(
    tmp_path: Path,
) -> None:
    """A 256 MiB event record whose bytes are really there (zeros), in a file of a few KiB:
    read in a child process, whose peak memory is measured."""
    zeros = 256 << 20
    stream, type_, ctype = b"user-x", b"user-created", b"application/json"
    header = EVENT_HEADER.pack(1000, 0, 0, bytes(16), len(stream), len(type_), len(ctype), 0, 0)
    length = len(header) + len(stream) + len(type_) + len(ctype) + zeros
    head = (
        b"USVCBNDL\x01"
        + frame(MANIFEST, b"{}")
        + FRAME.pack(EVENT, length)
        + header
        + stream
        + type_
        + ctype
    )
    path = tmp_path / "expanding.bundle"
    write_expanding(path, head, zeros, b"")
    assert path.stat().st_size < 64 << 10
    child = subprocess.run(
        [sys.executable, "-c", _MEASURED_READ, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    *refusals, peak_kib = child.stdout.splitlines()
    assert int(peak_kib) < 128 << 10  # KiB: a Python process with the reader loaded, no more
    assert len(refusals) == 2
    assert all(f"event 1 declares {length:,} bytes, more than" in line for line in refusals)


# Read the bundle named by argv[1] both ways; print each refusal, then the peak RSS in KiB of
# this program (VmHWM: getrusage's maxrss would include the test process's, inherited by fork).
_MEASURED_READ = """
import sys
from pathlib import Path
from repro.bundle import BundleError, read_bundle, verify_bundle
for read in (lambda p: list(read_bundle(p)), verify_bundle):
    try:
        read(Path(sys.argv[1]))
        print("read without a refusal")
    except BundleError as exc:
        print(exc)
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", ["duplicate", "backwards"])
def test_positions_that_do_not_strictly_increase_are_refused_naming_them(
    content: bytes, tmp_path: Path, reader: str, case: str
) -> None:
    records = records_of(content)
    if case == "duplicate":
        records[20] = with_position(records[20], 2900)  # the position of the event before it
        number, bad, before = 21, 2900, 2900
    else:
        records[20], records[21] = records[21], records[20]
        number, bad, before = 22, 3000, 3100
    path = tmp_path / "o.bundle"
    rewrite(path, assemble(orjson.dumps({"source": "test"}), records))
    message = rf"event {number}: its position {bad} is not after the position before it"
    with pytest.raises(BundleError, match=rf"{message} \({before}\)"):
        READERS[reader](path)


def test_positions_are_checked_across_read_chunks(tmp_path: Path) -> None:
    """Records of a third of a read chunk each, so that the one out of order is in another
    chunk than the one before it."""
    data, stream = b"x" * (CHUNK // 3), b"user-a"
    records = [
        EVENT_HEADER.pack(position, 0, 0, bytes(16), len(stream), 0, 0, len(data), 0)
        + stream
        + data
        for position in (10, 20, 30, 40, 35, 50)
    ]
    path = tmp_path / "chunks.bundle"
    rewrite(path, assemble(b"{}", records))
    for read in READERS.values():
        with pytest.raises(BundleError, match=r"event 5: its position 35 is not after .*\(40\)"):
            read(path)


def test_a_trailer_whose_positions_are_not_those_read_is_refused(
    content: bytes, tmp_path: Path
) -> None:
    records = records_of(content)
    last = 1000 + (COUNT - 1) * 100
    changed = assemble(b"{}", records).replace(
        f'"lastPosition":{last}'.encode(), f'"lastPosition":{last + 1}'.encode()
    )
    path = tmp_path / "t.bundle"
    rewrite(path, changed)
    with pytest.raises(BundleError, match="does not match its trailer"):
        verify_bundle(path)


def test_a_recorded_time_out_of_range_is_refused_naming_the_event(
    content: bytes, tmp_path: Path
) -> None:
    records = records_of(content)
    records[5] = records[5][:16] + struct.pack("<q", 1 << 62) + records[5][24:]
    path = tmp_path / "time.bundle"
    rewrite(path, assemble(b"{}", records))
    with pytest.raises(BundleError, match="event 6: its recorded time is out of range"):
        list(read_bundle(path))


def test_the_writer_refuses_an_event_the_reader_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "w.bundle"
    event = events(1)[0]
    huge = StoredEvent(
        event.commit_position,
        event.stream,
        event.revision,
        event.event_id,
        event.type,
        b"x" * (16 << 20),
        event.metadata,
        event.content_type,
        event.recorded_at,
    )
    with pytest.raises(BundleError, match="more than a bundle allows"), BundleWriter(path, {}) as w:
        w.write(huge)
    assert not path.exists()


def test_the_writer_refuses_a_manifest_the_reader_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "w.bundle"
    with pytest.raises(BundleError, match=r"the manifest has .* more than a bundle allows"):
        BundleWriter(path, {"note": "x" * MAX_JSON_FRAME})
    assert not path.exists()


def _damaged(content: bytes, rng: random.Random) -> bytes:
    """`content` damaged at random, the ways that matter: bytes, frame lengths and kinds,
    event header fields, a cut, an insertion."""
    changed = bytearray(content)
    offsets = [FIRST_FRAME]
    for _kind, payload in frames(content)[:-1]:
        offsets.append(offsets[-1] + FRAME.size + len(payload))
    at = rng.choice(offsets)
    match rng.randrange(6):
        case 0:
            for _ in range(rng.randrange(1, 4)):
                changed[rng.randrange(len(changed))] = rng.randrange(256)
        case 1:
            length = rng.choice([0, 1, 61, 62, 63, 1 << 20, 1 << 31, (1 << 32) - 1])
            struct.pack_into("<I", changed, at + 1, length)
        case 2:
            at = rng.choice(offsets[1:-1]) + FRAME.size
            fields = list(EVENT_HEADER.unpack_from(changed, at))
            field = rng.randrange(len(fields))
            limits = {2: (-(1 << 63), (1 << 63) - 1), 3: None, 4: (0, 0xFFFF), 5: (0, 0xFFFF)}
            limits |= {6: (0, 0xFFFF), 7: (0, 0xFFFFFFFF), 8: (0, 0xFFFFFFFF)}
            if field == 3:
                fields[3] = rng.randbytes(16)
            else:
                low, high = limits.get(field) or (0, (1 << 64) - 1)
                fields[field] = rng.choice([low, high, rng.randint(low, high)])
            EVENT_HEADER.pack_into(changed, at, *fields)
        case 3:
            del changed[rng.randrange(len(changed)) :]
        case 4:
            changed[at] = rng.choice(b"METX\x00")
        case _:
            where = rng.randrange(len(changed))
            changed[where:where] = rng.randbytes(rng.randrange(1, 40))
    return bytes(changed)


def test_random_damage_always_ends_in_a_bundle_error(content: bytes, tmp_path: Path) -> None:
    rng = random.Random(20261201)
    path = tmp_path / "fuzzed.bundle"
    for _ in range(250):
        rewrite(path, _damaged(content, rng))
        for read in READERS.values():
            with contextlib.suppress(BundleError):
                read(path)

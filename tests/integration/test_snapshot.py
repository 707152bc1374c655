"""Snapshots: what they hold, restoring one then replaying the rest from a bundle, and refusals
of damaged snapshots with nothing written."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import zstandard

from repro.bundle import write_bundle
from repro.cutoff import ReplayError, UntilPosition
from repro.history import BundleSource
from repro.replay import ReplayRequest, ReplaySummary, replay
from repro.snapshot import SnapshotError, check_snapshot, schema_version, take_snapshot
from tests.fixtures.history import schema_exists
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.records import StoredEvent

WORKER = "usersvc-read-model"
COUNT = 20
CUT = 8  # the snapshot holds the first CUT users


def position(i: int) -> int:
    return 1_000 + 100 * i


def events() -> list[StoredEvent]:
    start = datetime(2026, 11, 20, 9, tzinfo=UTC)
    return [
        StoredEvent(
            position(i),
            stream_name(f"snap-{i:02d}"),
            0,
            uuid.uuid5(uuid.NAMESPACE_URL, f"snapshot/{i}"),
            "user-created",
            encode_user_created(
                UserCreated(f"snap-{i:02d}", f"Person {i}", start + timedelta(seconds=i))
            ),
            b"{}",
            "application/json",
            start + timedelta(seconds=i),
        )
        for i in range(COUNT)
    ]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "history.bundle"
    write_bundle(path, events(), {"source": "test"})
    return path


def do_replay(bundle: Path, pg_url: str, schema: str, **kwargs: Any) -> ReplaySummary:
    return replay(
        BundleSource(bundle),
        ReplayRequest(target_url=pg_url, schema=schema, checkpoint_name=WORKER, **kwargs),
    )


@pytest.fixture
def snapshot(bundle: Path, pg_url: str, unique: str, tmp_path: Path) -> Path:
    do_replay(bundle, pg_url, f"sa_{unique}", cutoff=UntilPosition(position(CUT - 1)))
    path = tmp_path / "half.snapshot"
    take_snapshot(pg_url, f"sa_{unique}", WORKER, path)
    return path


def test_a_snapshot_holds_the_rows_the_checkpoint_and_the_schema_version(
    snapshot: Path,
) -> None:
    header = check_snapshot(snapshot)
    assert header["rows"] == CUT
    assert header["checkpoint"] == position(CUT - 1)
    assert header["schemaVersion"] == schema_version()
    assert not snapshot.with_name(snapshot.name + ".partial").exists()


def test_a_snapshot_plus_the_rest_of_a_bundle_equals_a_full_replay(
    snapshot: Path, bundle: Path, pg_url: str, unique: str
) -> None:
    restored = do_replay(bundle, pg_url, f"sb_{unique}", snapshot=snapshot)
    full = do_replay(bundle, pg_url, f"sc_{unique}")
    assert (restored.restored_rows, restored.applied) == (CUT, COUNT - CUT)
    assert restored.first_position == position(CUT)
    assert restored.checksum == full.checksum


def test_a_snapshot_with_a_cutoff_replays_up_to_it(
    snapshot: Path, bundle: Path, pg_url: str, unique: str
) -> None:
    restored = do_replay(
        bundle,
        pg_url,
        f"sd_{unique}",
        snapshot=snapshot,
        cutoff=UntilPosition(position(CUT + 2)),
    )
    direct = do_replay(bundle, pg_url, f"se_{unique}", cutoff=UntilPosition(position(CUT + 2)))
    assert restored.applied == 3
    assert restored.checksum == direct.checksum


def test_a_cutoff_before_the_snapshot_is_refused(
    snapshot: Path, bundle: Path, pg_url: str, unique: str
) -> None:
    with pytest.raises(ReplayError, match="before the first event"):
        do_replay(
            bundle,
            pg_url,
            f"sf_{unique}",
            snapshot=snapshot,
            cutoff=UntilPosition(position(2)),
        )
    assert not schema_exists(pg_url, f"sf_{unique}")


def _rewrite(path: Path, change: Any) -> None:
    raw = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    path.write_bytes(zstandard.ZstdCompressor().compress(change(raw)))


@pytest.mark.parametrize(
    ("damage", "change", "message"),
    [
        ("truncated", lambda raw: raw[: len(raw) // 2], "truncated"),
        ("a changed row", lambda raw: raw.replace(b"Person 3", b"Person X"), "corrupt"),
        ("no trailer", lambda raw: raw[: raw.rstrip(b"\n").rfind(b"\n") + 1], "truncated"),
        ("not a snapshot", lambda raw: b'{"hello": 1}\n', "not a usersvc snapshot"),
        ("not JSON", lambda raw: b"\x00\x01garbage", "not a usersvc snapshot"),
    ],
)
def test_a_damaged_snapshot_is_refused_and_nothing_is_written(
    snapshot: Path, bundle: Path, pg_url: str, unique: str, damage: str, change: Any, message: str
) -> None:
    _rewrite(snapshot, change)
    with pytest.raises(ReplayError, match=message):
        do_replay(bundle, pg_url, f"sg_{unique}", snapshot=snapshot)
    assert not schema_exists(pg_url, f"sg_{unique}")


def test_a_file_that_is_not_compressed_is_refused(
    snapshot: Path, bundle: Path, pg_url: str, unique: str
) -> None:
    snapshot.write_bytes(b"plain text, not a snapshot\n")
    with pytest.raises(ReplayError, match="snapshot"):
        do_replay(bundle, pg_url, f"sh_{unique}", snapshot=snapshot)
    assert not schema_exists(pg_url, f"sh_{unique}")


def test_a_snapshot_of_a_missing_schema_fails_and_leaves_no_file(
    pg_url: str, unique: str, tmp_path: Path
) -> None:
    output = tmp_path / "missing.snapshot"
    with pytest.raises(psycopg.Error):
        take_snapshot(pg_url, f"nothing_{unique}", WORKER, output)
    assert list(tmp_path.iterdir()) == []


def _with_rows(path: Path, change: Any, header_change: Any = lambda header: header) -> None:
    """Rewrite the snapshot's rows with `change` (a list of row lines in, one out) and its header
    with `header_change`, with a row count and a trailer that match, so that only the check under
    test can refuse it."""
    lines = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read().splitlines(True)
    rows = change(lines[1:-1])
    header = header_change({**orjson.loads(lines[0]), "rows": len(rows)})
    digest = hashlib.sha256(b"".join(rows)).hexdigest()
    content = [orjson.dumps(header) + b"\n", *rows, orjson.dumps({"sha256": digest}) + b"\n"]
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(content)))


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        ("not a row", lambda rows: [b"[1, 2]\n", *rows[1:]], "row 1 is not a read-model row"),
        ("not JSON", lambda rows: [rows[0], b"{{{\n", *rows[2:]], "row 2 is not a read-model"),
        (
            "a time PostgreSQL refuses",
            lambda rows: [rows[0].replace(b"2026-11-20", b"2026-13-45"), *rows[1:]],
            "holds a row the read model refuses",
        ),
        (
            "a duplicate username",
            lambda rows: [rows[0], rows[0].replace(b"Person 0", b"Person Z"), *rows[2:]],
            "holds a row the read model refuses",
        ),
    ],
)
def test_a_snapshot_with_rows_the_read_model_cannot_hold_is_refused_and_nothing_is_written(
    snapshot: Path, bundle: Path, pg_url: str, unique: str, case: str, change: Any, message: str
) -> None:
    _with_rows(snapshot, change)
    with pytest.raises(ReplayError, match=message):
        do_replay(bundle, pg_url, f"sr_{unique}", snapshot=snapshot)
    assert not schema_exists(pg_url, f"sr_{unique}")


@pytest.mark.parametrize(
    ("field", "value"), [("rows", "many"), ("rows", -1), ("rows", True), ("checkpoint", "x")]
)
def test_a_header_whose_counts_are_not_counts_is_refused(
    snapshot: Path, field: str, value: Any
) -> None:
    _with_rows(snapshot, lambda rows: rows, lambda header: {**header, field: value})
    with pytest.raises(SnapshotError, match=f"its header's {field} is"):
        check_snapshot(snapshot)


def test_a_line_longer_than_any_row_is_refused_without_holding_it(tmp_path: Path) -> None:
    """A 256 MiB line without a newline in a file of a few KiB, read in a child process whose
    peak memory is measured."""
    path = tmp_path / "long-line.snapshot"
    header = {"format": "usersvc-snapshot", "schemaVersion": schema_version(), "rows": 1}
    compressor = zstandard.ZstdCompressor(level=19).compressobj()
    parts = [compressor.compress(orjson.dumps(header) + b'\n["')]
    parts += [compressor.compress(b"a" * (1 << 24)) for _ in range(16)]
    parts.append(compressor.flush())
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 64 << 10
    child = subprocess.run(
        [sys.executable, "-c", _MEASURED_CHECK, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    refusal, peak_kib = child.stdout.splitlines()
    assert int(peak_kib) < 128 << 10  # KiB: a Python process with the reader loaded, no more
    assert "a line is longer than 65,536 bytes" in refusal


# Check the snapshot named by argv[1]; print the refusal, then the peak RSS in KiB of this program
# (VmHWM: getrusage's maxrss would include the test process's, inherited by fork).
_MEASURED_CHECK = """
import sys
from pathlib import Path
from repro.snapshot import SnapshotError, check_snapshot
try:
    check_snapshot(Path(sys.argv[1]))
    print("checked without a refusal")
except SnapshotError as exc:
    print(exc)
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""

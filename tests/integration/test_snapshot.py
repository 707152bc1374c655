"""Snapshots: what they hold, restoring one then replaying the rest from a bundle, and refusals
of damaged snapshots with nothing written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zstandard

from repro.bundle import write_bundle
from repro.cutoff import ReplayError, UntilPosition
from repro.history import BundleSource
from repro.replay import ReplayRequest, ReplaySummary, replay
from repro.snapshot import check_snapshot, schema_version, take_snapshot
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


def schema_exists(pg_url: str, schema: str) -> bool:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = %s)",
            (schema,),
        ).fetchone()
    return bool(row and row[0])


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

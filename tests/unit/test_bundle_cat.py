"""`usersvc bundle cat`: a bundle as JSON lines (manifest, events, checked trailer), JSON data as
JSON and anything else as base64, and the command's ends: a damaged bundle, a closed pipe."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from repro.bundle import BundleError, write_bundle
from repro.bundle_cat import cat_lines
from usersvc.records import StoredEvent

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
JSON_EVENT = StoredEvent(
    100,
    "user-ann",
    0,
    uuid.UUID(int=1),
    "user-created",
    b'{"username":"ann","fullName":"Ann Lee","openedAt":"2026-01-02T03:04:05.678Z"}',
    b'{"schemaVersion":1}',
    "application/json",
    MOMENT,
)
BINARY_EVENT = StoredEvent(
    200,
    "user-ann",
    1,
    uuid.UUID(int=2),
    "blob",
    b"\x00\xff",
    b"",
    "application/octet-stream",
    MOMENT,
)
BROKEN_JSON = StoredEvent(
    300,
    "user-ann",
    2,
    uuid.UUID(int=3),
    "user-x",
    b"{not json",
    b"meta",
    "application/json",
    MOMENT,
)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "small.bundle"
    write_bundle(path, [JSON_EVENT, BINARY_EVENT, BROKEN_JSON], {"source": "test"})
    return path


def test_the_manifest_every_event_and_the_trailer_are_json_lines(bundle: Path) -> None:
    lines = [orjson.loads(line) for line in cat_lines(bundle)]
    assert lines[0] == {"kind": "manifest", "manifest": {"source": "test"}}
    assert lines[1] == {
        "kind": "event",
        "position": 100,
        "stream": "user-ann",
        "revision": 0,
        "eventId": str(uuid.UUID(int=1)),
        "type": "user-created",
        "contentType": "application/json",
        "recordedAt": "2026-01-02T03:04:05.678000+00:00",
        "data": {"username": "ann", "fullName": "Ann Lee", "openedAt": "2026-01-02T03:04:05.678Z"},
        "metadata": {"schemaVersion": 1},
    }
    assert lines[-1] == {"kind": "trailer", "count": 3, "firstPosition": 100, "lastPosition": 300}


def test_data_that_is_not_json_is_base64(bundle: Path) -> None:
    binary, broken = (orjson.loads(line) for line in list(cat_lines(bundle))[2:4])
    assert base64.b64decode(binary["dataBase64"]) == b"\x00\xff"
    assert binary["metadataBase64"] == ""
    assert "data" not in binary
    assert base64.b64decode(broken["dataBase64"]) == b"{not json"
    assert base64.b64decode(broken["metadataBase64"]) == b"meta"


def test_a_damaged_bundle_fails_after_the_lines_before_the_damage(
    bundle: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(bundle.read_bytes()[:-8])
    with pytest.raises(BundleError):
        list(cat_lines(cut))


def cat(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "usersvc_cli.main", "bundle", "cat", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_the_command_exits_0_when_its_reader_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "long.bundle"
    many = [
        StoredEvent(
            10 + i, "user-ann", i, uuid.uuid4(), "t", b"{}", b"", "application/json", MOMENT
        )
        for i in range(50_000)
    ]
    write_bundle(path, many, {"source": "test"})
    process = cat(path)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as `| head -1` does
    assert process.wait(60) == 0
    assert orjson.loads(first)["kind"] == "manifest"
    with process.stderr:
        assert process.stderr.read() == b""


def test_the_command_refuses_a_file_that_is_not_a_bundle(tmp_path: Path) -> None:
    path = tmp_path / "not.bundle"
    path.write_text("hello")
    process = cat(path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"bundle cat refused: " in err
    assert b"not.bundle is corrupt or truncated" in err

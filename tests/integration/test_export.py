"""Export: ranges, the manifest, deterministic redaction, and no file left by a refused export.

The source is a bundle written here (any `EventSource` exports the same way; the ESDB path is
covered by test_replay and test_replay_cli).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from repro.bundle import read_bundle, read_manifest, write_bundle
from repro.cutoff import ReplayError, UntilEventId, UntilTime
from repro.export import export, redact
from repro.history import BundleSource
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.records import StoredEvent

START = datetime(2026, 11, 20, 9, tzinfo=UTC)
COUNT = 10


def position(i: int) -> int:
    return 500 + 10 * i


def user_event(i: int, full_name: str | None = None) -> StoredEvent:
    name = f"exp-{i:02d}"
    return StoredEvent(
        position(i),
        stream_name(name),
        0,
        uuid.uuid5(uuid.NAMESPACE_URL, f"export/{i}"),
        "user-created",
        encode_user_created(
            UserCreated(name, full_name or f"Person {i}", START + timedelta(seconds=i))
        ),
        b'{"correlationId":"c"}',
        "application/json",
        START + timedelta(seconds=i),
    )


@pytest.fixture
def source(tmp_path: Path) -> BundleSource:
    path = tmp_path / "source.bundle"
    # Two users share a full name, to show redaction keeps equal values equal.
    history = [user_event(i, "Same Name" if i in (3, 7) else None) for i in range(COUNT)]
    write_bundle(path, history, {"source": "test"})
    return BundleSource(path)


def test_an_export_of_a_range_holds_exactly_that_range(
    source: BundleSource, tmp_path: Path
) -> None:
    output = tmp_path / "range.bundle"
    result = export(
        source,
        output,
        from_position=position(1),
        cutoff=UntilTime(START + timedelta(seconds=6)),
    )
    exported = list(read_bundle(output))
    assert [e.commit_position for e in exported] == [position(i) for i in range(2, 7)]
    assert exported == [user_event(i, "Same Name" if i == 3 else None) for i in range(2, 7)]
    manifest = read_manifest(output)
    assert manifest["fromPosition"] == position(1)
    assert (
        manifest["until"] == f"until time {(START + timedelta(seconds=6)).isoformat()} (inclusive)"
    )
    assert manifest["format"] == "usersvc-bundle"
    assert {"createdAt", "codeVersion", "source", "redacted"} <= manifest.keys()
    assert (result["count"], result["firstPosition"], result["lastPosition"]) == (
        5,
        position(2),
        position(6),
    )


def test_redaction_is_deterministic_and_touches_only_the_named_fields(
    source: BundleSource, tmp_path: Path
) -> None:
    first, second = tmp_path / "one.bundle", tmp_path / "two.bundle"
    export(source, first, redact_fields=["fullName"])
    export(source, second, redact_fields=["fullName"])
    one, two = list(read_bundle(first)), list(read_bundle(second))
    assert one == two
    bodies = [orjson.loads(e.data) for e in one]
    names = [b["fullName"] for b in bodies]
    assert all(n.startswith("redacted-") and "Person" not in n for n in names)
    assert names[3] == names[7]
    assert len(set(names)) == COUNT - 1
    assert [b["username"] for b in bodies] == [f"exp-{i:02d}" for i in range(COUNT)]
    assert all(e.metadata == b'{"correlationId":"c"}' for e in one)


def test_redaction_leaves_events_without_the_field_or_json_alone() -> None:
    event = user_event(0)
    assert redact(event, ["email"]) is event
    binary = StoredEvent(
        1, "user-x", 0, uuid.uuid4(), "t", b"\x00", b"", "application/octet-stream", START
    )
    assert redact(binary, ["fullName"]) is binary


def test_a_refused_export_leaves_no_file(source: BundleSource, tmp_path: Path) -> None:
    output = tmp_path / "refused.bundle"
    with pytest.raises(ReplayError, match="no event with id"):
        export(source, output, cutoff=UntilEventId(uuid.uuid4()))
    assert list(tmp_path.iterdir()) == [tmp_path / "source.bundle"]

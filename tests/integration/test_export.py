"""Export: ranges, the manifest, keyed pseudonyms (HMAC) that hashing guessed values cannot
find, and no file left by a refused export.

The source is a bundle written here (any `EventSource` exports the same way; the ESDB path is
covered by test_replay and test_replay_cli).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from repro.bundle import read_bundle, read_manifest, write_bundle
from repro.bundle_cat import cat_lines
from repro.cutoff import ReplayError, UntilEventId, UntilTime
from repro.export import Pseudonyms, export, read_key
from repro.history import BundleSource
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.records import StoredEvent

START = datetime(2026, 11, 20, 9, tzinfo=UTC)
JSON = "application/json"
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


def key_file(tmp_path: Path, key: bytes = b"k" * 32) -> Path:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(key + b"\n")
    return path


def test_pseudonyms_are_deterministic_within_an_export_and_touch_only_the_named_fields(
    source: BundleSource, tmp_path: Path
) -> None:
    output = tmp_path / "one.bundle"
    export(source, output, redact_fields=["fullName"])
    events = list(read_bundle(output))
    bodies = [orjson.loads(e.data) for e in events]
    names = [b["fullName"] for b in bodies]
    assert all(n.startswith("redacted-") and "Person" not in n for n in names)
    assert names[3] == names[7]
    assert len(set(names)) == COUNT - 1
    assert [b["username"] for b in bodies] == [f"exp-{i:02d}" for i in range(COUNT)]
    assert all(e.metadata == b'{"correlationId":"c"}' for e in events)


def test_hashing_candidate_values_does_not_find_the_pseudonyms(
    source: BundleSource, tmp_path: Path
) -> None:
    output = tmp_path / "pseudonymous.bundle"
    export(source, output, redact_fields=["fullName", "username"])
    text = b"\n".join(cat_lines(output))
    # An attacker with the bundle hashes every likely value, in every usual form.
    candidates = [f"Person {i}" for i in range(COUNT)] + [f"exp-{i:02d}" for i in range(COUNT)]
    candidates.append("Same Name")
    for value in candidates:
        for form in (value.encode(), orjson.dumps(value)):
            digest = hashlib.sha256(form).hexdigest()
            for guess in (digest, digest[:12], digest[:32]):
                assert guess.encode() not in text, f"{value!r} is found by its plain SHA-256"
        assert value.encode() not in text
    # Unkeyed hashing found them (the old scheme): the test would have seen it.
    old_token = hashlib.sha256(orjson.dumps("Person 0")).hexdigest()[:12]
    assert old_token.encode() not in text


def test_each_export_has_its_own_key_unless_a_key_file_is_given(
    source: BundleSource, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.bundle", tmp_path / "two.bundle"
    export(source, one, redact_fields=["fullName"])
    export(source, two, redact_fields=["fullName"])
    assert [e.data for e in read_bundle(one)] != [e.data for e in read_bundle(two)]
    assert read_manifest(one)["redaction"] == {
        "method": "hmac-sha256",
        "key": "generated for this export, not kept",
    }
    key = key_file(tmp_path)
    three, four = tmp_path / "three.bundle", tmp_path / "four.bundle"
    export(source, three, redact_fields=["fullName"], redact_key=read_key(key))
    export(source, four, redact_fields=["fullName"], redact_key=read_key(key))
    assert list(read_bundle(three)) == list(read_bundle(four))
    redaction = read_manifest(three)["redaction"]
    assert redaction["keyFingerprint"] == Pseudonyms(b"k" * 32, ["fullName"]).fingerprint()
    assert b"k" * 32 not in b"\n".join(cat_lines(three))


def test_a_pseudonymous_username_renames_every_event_of_its_stream(tmp_path: Path) -> None:
    created = user_event(1)
    # An event of another type in the same stream, whose data does not hold the username.
    other_type = StoredEvent(
        position(2), created.stream, 1, uuid.uuid4(), "user-renamed", b"{}", b"", JSON, START
    )
    pseudonyms = Pseudonyms(b"s" * 32, ["username"])
    first, second = pseudonyms.apply(created), pseudonyms.apply(other_type)
    token = pseudonyms.token("exp-01")
    assert first.stream == second.stream == stream_name(token)
    assert orjson.loads(first.data)["username"] == token
    assert second.data == b"{}"


def test_pseudonyms_leave_events_without_the_field_or_json_alone() -> None:
    pseudonyms = Pseudonyms(b"s" * 32, ["email"])
    event = user_event(0)
    assert pseudonyms.apply(event) is event
    binary = StoredEvent(
        1, "other-x", 0, uuid.uuid4(), "t", b"\x00", b"", "application/octet-stream", START
    )
    assert Pseudonyms(b"s" * 32, ["fullName"]).apply(binary) is binary


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="holds 5 bytes; a key needs at least 16"):
        read_key(key_file(tmp_path, b"short"))
    with pytest.raises(ReplayError, match="cannot read the key file"):
        read_key(tmp_path / "absent.key")


def test_a_refused_export_leaves_no_file(source: BundleSource, tmp_path: Path) -> None:
    output = tmp_path / "refused.bundle"
    with pytest.raises(ReplayError, match="no event with id"):
        export(source, output, cutoff=UntilEventId(uuid.uuid4()))
    assert list(tmp_path.iterdir()) == [tmp_path / "source.bundle"]

"""The bundle format: round trips, streaming, and refusal of anything damaged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from repro import bundle_reader, event_maker
from repro.bundle import (
    MAGIC,
    BundleError,
    BundleWriter,
    read_batches,
    read_bundle,
    read_manifest,
    read_trailer,
    verify_bundle,
    write_bundle,
)
from tests.fixtures.bundles import raw_content, rewrite
from usersvc.records import StoredEvent

START = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def events(count: int, first_position: int = 0) -> Iterator[StoredEvent]:
    for i in range(count):
        yield StoredEvent(
            commit_position=first_position + i * 150,
            stream=f"user-ünïcode-{i}",
            revision=i % 3,
            event_id=uuid.uuid4(),
            type="user-created" if i % 5 else "user-renamed",
            data=orjson.dumps({"username": f"u{i}", "fullName": "Zoë Ω"}),
            metadata=b"" if i % 2 else b'{"schemaVersion":1}',
            content_type="application/json" if i % 7 else "application/octet-stream",
            recorded_at=START + timedelta(microseconds=i * 1001),
        )


def test_events_round_trip_exactly_with_the_manifest(tmp_path: Path) -> None:
    original = list(events(500))
    path = tmp_path / "a.bundle"
    summary = write_bundle(path, original, {"source": "test", "range": [1, 2]})
    assert summary["count"] == 500
    assert summary["firstPosition"] == 0  # position 0 is a position, not "none"
    assert summary["lastPosition"] == original[-1].commit_position
    assert list(read_bundle(path)) == original
    assert read_manifest(path) == {"source": "test", "range": [1, 2]}
    assert verify_bundle(path) == {
        "source": "test",
        "range": [1, 2],
        "count": 500,
        "firstPosition": 0,
        "lastPosition": original[-1].commit_position,
    }


def test_an_empty_bundle_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.bundle"
    assert write_bundle(path, [], {})["count"] == 0
    assert list(read_bundle(path)) == []
    assert verify_bundle(path) == {"count": 0, "firstPosition": None, "lastPosition": None}


def test_records_larger_than_a_read_chunk_round_trip(tmp_path: Path) -> None:
    big = StoredEvent(
        400, "user-big", 0, uuid.uuid4(), "user-created", b"x" * 3_000_000, b"{}", "c", START
    )
    original = [*events(3), big, *events(3, first_position=500)]
    path = tmp_path / "big.bundle"
    write_bundle(path, original, {})
    assert list(read_bundle(path)) == original


def test_the_writer_streams_and_keeps_no_events(tmp_path: Path) -> None:
    path = tmp_path / "s.bundle"
    with BundleWriter(path, {"source": "s"}) as writer:
        for event in events(20_000):
            writer.write(event)
        assert writer.count == 20_000
        assert not any(isinstance(v, list) for v in vars(writer).values())
    # 20,000 events compress well below their raw size
    assert path.stat().st_size < 20_000 * 100


def test_events_out_of_position_order_are_refused(tmp_path: Path) -> None:
    first, second = list(events(2))
    with pytest.raises(BundleError, match="increasing position"):
        write_bundle(tmp_path / "o.bundle", [second, first], {})
    assert not (tmp_path / "o.bundle").exists()


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bundle"

    def failing() -> Iterator[StoredEvent]:
        yield from events(3)
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        write_bundle(path, failing(), {})
    assert not path.exists()


def test_a_truncated_bundle_is_refused_before_the_reading_ends(tmp_path: Path) -> None:
    path = tmp_path / "t.bundle"
    write_bundle(path, events(100), {})
    content = raw_content(path)
    for cut in (len(content) - 1, len(content) - 60, len(content) // 2, 20):
        rewrite(path, content[:cut])
        with pytest.raises(BundleError, match="truncated"):
            list(read_bundle(path))


def test_a_truncated_bundle_is_refused_by_verify_bundle(tmp_path: Path) -> None:
    path = tmp_path / "t.bundle"
    write_bundle(path, events(100), {})
    content = raw_content(path)
    for cut in (len(content) - 1, len(content) - 60, len(content) // 2, 20):
        rewrite(path, content[:cut])
        with pytest.raises(BundleError, match="truncated"):
            verify_bundle(path)


def test_reading_checks_in_the_same_pass_after_handing_out_the_events(tmp_path: Path) -> None:
    path = tmp_path / "p.bundle"
    write_bundle(path, events(100), {})
    rewrite(path, raw_content(path).replace(b'"count":100', b'"count":101'))
    handed_out: list[StoredEvent] = []
    with pytest.raises(BundleError, match="does not match its trailer"):
        handed_out.extend(read_bundle(path))
    assert len(handed_out) == 100


def test_every_cut_after_the_manifest_is_refused_as_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny reads, so that frames and event headers are split across reads at every offset.
    monkeypatch.setattr(bundle_reader, "CHUNK", 7)
    path = tmp_path / "cut.bundle"
    write_bundle(path, events(2), {"source": "cut"})
    content = raw_content(path)
    manifest_end = len(MAGIC) + 1 + 5 + len(b'{"source":"cut"}')
    refused = []
    for cut in range(manifest_end, len(content)):
        rewrite(path, content[:cut])
        with pytest.raises(BundleError) as caught:
            list(read_bundle(path))
        refused.append("truncated" in str(caught.value))
    assert refused == [True] * (len(content) - manifest_end)


def test_events_split_across_reads_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_reader, "CHUNK", 7)
    original = list(events(50))
    path = tmp_path / "small-reads.bundle"
    write_bundle(path, original, {})
    assert list(read_bundle(path)) == original


def test_batches_hold_the_events_in_order(tmp_path: Path) -> None:
    original = list(events(3000))
    path = tmp_path / "b.bundle"
    write_bundle(path, original, {})
    assert [e for batch in read_batches(path) for e in batch] == original


def test_without_verify_the_checksum_is_not_computed(tmp_path: Path) -> None:
    path = tmp_path / "h.bundle"
    original = list(events(10))
    write_bundle(path, original, {})
    content = raw_content(path)
    digest = orjson.loads(content[content.rindex(b"{") :])["sha256"]
    rewrite(path, content.replace(digest.encode(), b"0" * 64))
    assert list(read_bundle(path, verify=False)) == original


def test_with_verify_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.bundle"
    write_bundle(path, events(10), {})
    content = raw_content(path)
    digest = orjson.loads(content[content.rindex(b"{") :])["sha256"]
    rewrite(path, content.replace(digest.encode(), b"0" * 64))
    with pytest.raises(BundleError, match="does not match its trailer"):
        list(read_bundle(path))


def test_the_direct_event_maker_builds_what_the_constructors_build() -> None:
    for i, event in enumerate(events(20)):
        args = (
            event.commit_position,
            event.stream,
            event.revision,
            event.event_id.bytes,
            event.type,
            event.data,
            event.metadata,
            event.content_type,
            event.recorded_at,
        )
        made = event_maker.make_event(*args)
        assert (made, hash(made.event_id), made.event_id.is_safe) == (
            event,
            hash(event.event_id),
            event.event_id.is_safe,
        ), f"event {i}"


def test_the_reader_fills_slots_directly_on_this_python() -> None:
    # If StoredEvent or UUID changed shape, the reader falls back to their constructors (slower).
    assert event_maker.make_event.__name__ == "filled"


def test_a_truncated_compressed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "z.bundle"
    write_bundle(path, events(2000), {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated"):
        verify_bundle(path)


def test_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.bundle"
    write_bundle(path, events(100), {})
    content = bytearray(raw_content(path))
    content[len(content) // 2] ^= 0x01
    rewrite(path, bytes(content))
    with pytest.raises(BundleError, match=r"corrupt|truncated"):
        list(read_bundle(path))


def test_a_changed_trailer_count_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.bundle"
    write_bundle(path, events(10), {})
    content = raw_content(path)
    rewrite(path, content.replace(b'"count":10', b'"count":11'))
    with pytest.raises(BundleError, match="does not match its trailer"):
        verify_bundle(path)


def test_data_after_the_trailer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.bundle"
    write_bundle(path, events(3), {})
    rewrite(path, raw_content(path) + b"M\x02\x00\x00\x00{}")
    with pytest.raises(BundleError, match="after its trailer"):
        verify_bundle(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a bundle at all", "not a usersvc bundle"),
        (MAGIC, "truncated"),
        (b"", "truncated"),
        (MAGIC + bytes([99]), "bundle format 99"),
        (MAGIC + bytes([1]), "no manifest"),
    ],
)
def test_what_is_not_a_bundle_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.bundle"
    rewrite(path, content)
    with pytest.raises(BundleError, match=message):
        verify_bundle(path)


def test_a_file_that_is_not_zstd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.bundle"
    path.write_bytes(b"USVCBNDL plain text, not compressed")
    with pytest.raises(BundleError, match="corrupt or truncated"):
        verify_bundle(path)


def test_a_missing_file_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        read_manifest(tmp_path / "missing.bundle")


def test_an_undecodable_record_is_refused_naming_the_event(tmp_path: Path) -> None:
    path = tmp_path / "u.bundle"
    write_bundle(path, events(5), {})
    content = raw_content(path)
    stream = "user-ünïcode-2".encode()
    rewrite(path, content.replace(stream, b"\xff" + stream[1:]))
    with pytest.raises(BundleError, match="corrupt: event 3:"):
        list(read_bundle(path))


def test_until_yields_the_events_up_to_that_position(tmp_path: Path) -> None:
    original = list(events(100))  # positions 0, 150, 300, ...
    path = tmp_path / "until.bundle"
    write_bundle(path, original, {})
    assert list(read_bundle(path, until=original[40].commit_position + 1)) == original[:41]


def test_until_still_checks_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "until-damaged.bundle"
    write_bundle(path, events(100), {})
    content = raw_content(path)
    digest = orjson.loads(content[content.rindex(b"{") :])["sha256"]
    rewrite(path, content.replace(digest.encode(), b"0" * 64))
    with pytest.raises(BundleError, match="does not match its trailer"):
        list(read_bundle(path, until=150))


def test_until_across_small_reads_checks_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_reader, "CHUNK", 7)
    original = list(events(30))
    path = tmp_path / "until-small.bundle"
    write_bundle(path, original, {})
    content = raw_content(path)
    rewrite(path, content[:-3])
    with pytest.raises(BundleError, match="truncated"):
        list(read_bundle(path, until=original[10].commit_position))


def test_until_without_verify_stops_reading_at_the_cutoff(tmp_path: Path) -> None:
    original = list(events(100))
    path = tmp_path / "until-unverified.bundle"
    write_bundle(path, original, {})
    content = raw_content(path)
    rewrite(path, content[: len(content) // 2])  # cut well after event 10
    assert (
        list(read_bundle(path, verify=False, until=original[10].commit_position)) == (original[:11])
    )


def test_read_trailer_gives_what_verify_bundle_gives(tmp_path: Path) -> None:
    path = tmp_path / "trailer.bundle"
    write_bundle(path, events(300), {"source": "t"})
    assert read_trailer(path) == verify_bundle(path)


def test_read_trailer_of_an_empty_bundle(tmp_path: Path) -> None:
    path = tmp_path / "empty-trailer.bundle"
    write_bundle(path, [], {})
    assert read_trailer(path) == {"count": 0, "firstPosition": None, "lastPosition": None}


def test_read_trailer_across_small_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_reader, "CHUNK", 7)
    path = tmp_path / "trailer-small.bundle"
    write_bundle(path, events(30), {})
    assert read_trailer(path)["count"] == 30


def test_read_trailer_refuses_a_bundle_cut_before_its_trailer_ends(tmp_path: Path) -> None:
    path = tmp_path / "trailer-cut.bundle"
    write_bundle(path, events(30), {})
    content = raw_content(path)
    for cut in (len(content) - 1, len(content) - 60, len(content) // 2):
        rewrite(path, content[:cut])
        with pytest.raises(BundleError, match="truncated"):
            read_trailer(path)

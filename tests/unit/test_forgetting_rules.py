"""The truncation rules of copies read from `$all` (repro.forgetting), with no server.

`$all` of a real EventStoreDB still yields truncated events until a scavenge, and no longer after
it: the copy must be the same either way.
"""

from __future__ import annotations

import logging
import uuid

import orjson
import pytest

from repro.forgetting import ForgottenDuringRead, Truncations, change_of
from tests.fixtures.events import OPENED
from usersvc.records import StoredEvent

MAX_REVISION = 2**63 - 1


def event(position: int, stream: str, revision: int, type_: str = "t") -> StoredEvent:
    return StoredEvent(position, stream, revision, uuid.uuid4(), type_, b"{}", b"", "", OPENED)


def metadata(position: int, stream: str, value: object) -> StoredEvent:
    data = orjson.dumps(value)
    return StoredEvent(position, "$$" + stream, 0, uuid.uuid4(), "$metadata", data, b"", "", OPENED)


# user-a: created, changed, deleted (truncated before 2), created again; user-b untouched.
BEFORE_SCAVENGE = [
    event(10, "user-a", 0),
    event(20, "user-b", 0),
    event(30, "user-a", 1),
    event(40, "user-a", 2),
    event(50, "user-a", 3),
]
AFTER_SCAVENGE = [e for e in BEFORE_SCAVENGE if not (e.stream == "user-a" and e.revision < 2)]
TRUNCATED = [metadata(45, "user-a", {"$tb": 2})]


def kept(truncations: Truncations, events: list[StoredEvent]) -> list[tuple[str, int]]:
    return [(e.stream, e.revision) for e in events if truncations.keep(e)]


@pytest.mark.parametrize("history", [BEFORE_SCAVENGE, AFTER_SCAVENGE], ids=["before", "after"])
def test_a_copy_is_the_same_before_and_after_a_scavenge(history: list[StoredEvent]) -> None:
    truncations = Truncations("user-")
    truncations.learn(TRUNCATED)
    assert kept(truncations, history) == [("user-b", 0), ("user-a", 2), ("user-a", 3)]


def test_the_last_metadata_of_a_stream_wins_and_metadata_without_tb_lifts_it() -> None:
    truncations = Truncations("user-")
    truncations.learn([metadata(1, "user-a", {"$tb": 2}), metadata(2, "user-a", {})])
    assert kept(truncations, BEFORE_SCAVENGE) == [(e.stream, e.revision) for e in BEFORE_SCAVENGE]


def test_a_soft_deleted_stream_loses_every_event() -> None:
    truncations = Truncations("user-")
    truncations.learn([metadata(60, "user-a", {"$tb": MAX_REVISION})])
    assert kept(truncations, BEFORE_SCAVENGE) == [("user-b", 0)]


def test_a_tombstone_truncates_everything_before_it_for_good() -> None:
    tombstone = event(60, "user-a", MAX_REVISION, "$streamDeleted")
    truncations = Truncations("user-")
    truncations.learn([tombstone, metadata(70, "user-a", {})])
    assert kept(truncations, [*BEFORE_SCAVENGE, tombstone]) == [
        ("user-b", 0),
        ("user-a", MAX_REVISION),
    ]


@pytest.mark.parametrize(
    "value", [{"$tb": "2"}, {"$tb": True}, {"$tb": -1}, [1, 2], "text"], ids=repr
)
def test_metadata_without_a_usable_tb_truncates_nothing(value: object) -> None:
    change = change_of(metadata(1, "user-a", value), "user-")
    assert change is not None
    assert change.before is None


def test_metadata_and_tombstones_of_other_streams_are_ignored() -> None:
    assert change_of(metadata(1, "order-1", {"$tb": 3}), "user-") is None
    assert change_of(event(1, "order-1", MAX_REVISION, "$streamDeleted"), "user-") is None
    assert change_of(event(1, "user-a", 0, "user-created"), "user-") is None


def test_a_truncation_after_the_read_of_a_copied_revision_fails_the_copy() -> None:
    truncations = Truncations("user-")
    truncations.learn([])
    kept(truncations, BEFORE_SCAVENGE)
    with pytest.raises(ForgottenDuringRead, match="'user-a' was truncated before revision 2"):
        truncations.recheck(TRUNCATED)


def test_a_truncation_known_before_the_read_passes_the_recheck() -> None:
    truncations = Truncations("user-")
    truncations.learn(TRUNCATED)
    kept(truncations, BEFORE_SCAVENGE)
    truncations.recheck(TRUNCATED)  # the same metadata read again: nothing copied is below it


def test_a_truncation_of_a_stream_not_copied_passes_the_recheck() -> None:
    truncations = Truncations("user-")
    truncations.learn([])
    kept(truncations, [e for e in BEFORE_SCAVENGE if e.stream == "user-b"])
    truncations.recheck(TRUNCATED)


def test_retention_settings_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    truncations = Truncations("user-")
    with caplog.at_level(logging.WARNING, logger="repro.forgetting"):
        truncations.learn([metadata(1, "user-a", {"$maxCount": 1}), metadata(2, "user-b", {})])
    assert [r.getMessage() for r in caplog.records] == [
        "1 stream(s) set $maxCount or $maxAge (e.g. user-a); copies honour only $tb and"
        " tombstones, so events those settings hide from stream reads are copied"
    ]

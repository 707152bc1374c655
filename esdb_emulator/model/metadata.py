"""Stream metadata as the real server applies it: the `$$` stream that holds it, and the keys
reads and appends obey (`$tb` truncate-before and soft deletion, `$maxCount`, `$maxAge`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import orjson

from esdb_emulator.model.records import MAX_REVISION, Proposed, Record

METADATA_TYPE = "$metadata"


def metastream(stream: str) -> str:
    return "$$" + stream


def is_metastream(stream: str) -> bool:
    return stream.startswith("$$")


def latest(records: Sequence[Record]) -> dict[str, object]:
    """The metadata a metastream's records hold now: its last event, if a JSON object."""
    if not records:
        return {}
    try:
        value = orjson.loads(records[-1].data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def is_soft_deleted(metadata: dict[str, object]) -> bool:
    return metadata.get("$tb") == MAX_REVISION


def first_visible(stream: str, metadata: dict[str, object], count: int) -> int:
    """The lowest revision reads show of a stream of `count` events."""
    if is_metastream(stream):
        return count - 1  # a metastream shows only its latest event
    low = 0
    truncate_before = metadata.get("$tb")
    if isinstance(truncate_before, int):
        low = truncate_before
    max_count = metadata.get("$maxCount")
    if isinstance(max_count, int) and max_count > 0:
        low = max(low, count - max_count)
    return low


def max_age_seconds(metadata: dict[str, object]) -> int | None:
    value = metadata.get("$maxAge")
    return value if isinstance(value, int) and value > 0 else None


def metadata_event(metadata: dict[str, object]) -> Proposed:
    return Proposed(uuid.uuid4(), METADATA_TYPE, True, orjson.dumps(metadata), b"")

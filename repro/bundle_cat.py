"""A bundle as JSON lines, for ordinary tools (`jq`, `grep`): `usersvc bundle cat`.

One JSON object a line, each with its `kind`:
- `{"kind": "manifest", "manifest": {...}}` first;
- `{"kind": "event", "position", "stream", "revision", "eventId", "type", "contentType",
  "recordedAt", "data" | "dataBase64", "metadata" | "metadataBase64"}` for each event, in order:
  data of a JSON event is given as the JSON value it holds (`data`); anything else (or JSON that
  does not parse) as base64 (`dataBase64`); metadata likewise, as JSON when it parses;
- `{"kind": "trailer", "count", "firstPosition", "lastPosition"}` last, once the whole bundle
  was checked against its trailer (a damaged bundle raises `BundleError` before it).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from repro.bundle_reader import open_bundle
from usersvc.records import StoredEvent

JSON = "application/json"


def cat_lines(path: Path) -> Iterator[bytes]:
    """The lines of `path` (without line breaks). Raises `BundleError` when it is damaged."""
    with open_bundle(path) as reader:
        yield orjson.dumps({"kind": "manifest", "manifest": reader.manifest})
        for batch in reader.batches(decode=True, verify=True):
            for event in batch:
                yield orjson.dumps(event_object(event))
        yield orjson.dumps(
            {
                "kind": "trailer",
                "count": reader.count,
                "firstPosition": reader.first_position,
                "lastPosition": reader.last_position,
            }
        )


def event_object(event: StoredEvent) -> dict[str, Any]:
    line: dict[str, Any] = {
        "kind": "event",
        "position": event.commit_position,
        "stream": event.stream,
        "revision": event.revision,
        "eventId": str(event.event_id),
        "type": event.type,
        "contentType": event.content_type,
        "recordedAt": event.recorded_at.isoformat(),
    }
    _payload(line, "data", event.data, event.content_type == JSON)
    _payload(line, "metadata", event.metadata, True)
    return line


def _payload(line: dict[str, Any], key: str, raw: bytes, maybe_json: bool) -> None:
    if maybe_json and raw:
        try:
            line[key] = orjson.loads(raw)
            return
        except orjson.JSONDecodeError:
            pass
    line[key + "Base64"] = base64.b64encode(raw).decode()

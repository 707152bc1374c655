"""`usersvc export`: the events of a range into a bundle, optionally with personal fields redacted.

Redaction replaces the named fields of each event's JSON data with a deterministic token
(`redacted-<first 12 hex of SHA-256>`), so the same value always maps to the same token and a
replay of the bundle still behaves as production did (uniqueness, joins) without the data. A
redacted `username` is replaced in its stream name too, so the events still project.
The bundle is written to a temporary name and renamed at the end: no partial file is left.
Forgetting: the source yields nothing below a stream's truncation (a deletion), so a bundle
exported after a deletion holds of that user only the deletion event and what followed it; a
deletion during the export fails it (`check_forgotten`) rather than leave the user in the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from repro.bundle import VERSION as BUNDLE_VERSION
from repro.bundle import BundleWriter
from repro.cutoff import Cutoff, ReplayError, ToEnd, take
from repro.history import EventSource, SourceUnavailable
from repro.progress import Progress
from usersvc.events import stream_name
from usersvc.records import StoredEvent


def redact(event: StoredEvent, fields: Sequence[str]) -> StoredEvent:
    """Replace `fields` of the event's JSON data with tokens. A redacted `username` is also
    replaced in the stream name (`user-<username>`), so the event still projects."""
    if not fields or event.content_type != "application/json":
        return event
    try:
        body = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return event
    if not isinstance(body, dict) or not any(f in body for f in fields):
        return event
    stream = event.stream
    for field in fields:
        if field in body:
            token = f"redacted-{hashlib.sha256(orjson.dumps(body[field])).hexdigest()[:12]}"
            if field == "username" and stream == stream_name(str(body[field])):
                stream = stream_name(token)
            body[field] = token
    return replace(event, stream=stream, data=orjson.dumps(body))


def check_output(output: Path) -> None:
    """Refuse (`ReplayError`) an output the bundle could not be written to, before anything is
    read: a folder that does not exist or cannot be written, or a name that is a folder."""
    folder = output.parent
    if not folder.is_dir():
        raise ReplayError(f"cannot write {output}: the folder {folder} does not exist")
    if output.is_dir():
        raise ReplayError(f"cannot write {output}: it is a folder")
    if not os.access(folder, os.W_OK):
        raise ReplayError(f"cannot write {output}: the folder {folder} is not writable")


def export(
    source: EventSource,
    output: Path,
    *,
    cutoff: Cutoff | None = None,
    from_position: int | None = None,
    redact_fields: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the events after `from_position` up to `cutoff` to `output`; return the manifest
    and trailer. A refused cutoff or a failing source leaves no file; an output that could not be
    written is refused before anything is read."""
    check_output(output)
    cutoff = cutoff or ToEnd()
    manifest = {
        "format": "usersvc-bundle",
        "formatVersion": BUNDLE_VERSION,
        "source": source.label,
        "streamPrefix": source.prefix,
        "fromPosition": from_position,
        "until": cutoff.describe(),
        "redacted": list(redact_fields),
        "createdAt": datetime.now(UTC).isoformat(),
        "codeVersion": version("usersvc"),
    }
    partial = output.with_name(output.name + ".partial")
    try:
        span = source.span(from_position)
        with (
            BundleWriter(partial, manifest) as writer,
            Progress("export", span=span) as bar,
        ):
            for event in take(source.events(from_position), cutoff, after=from_position):
                writer.write(redact(event, redact_fields))
                bar.update(1, event.commit_position)
            source.check_forgotten()
            trailer = writer.trailer()
    except SourceUnavailable as exc:
        raise ReplayError(str(exc)) from None
    partial.replace(output)
    return {**manifest, **trailer}

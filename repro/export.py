"""`usersvc export`: the events of a range into a bundle, optionally with personal fields
pseudonymized.

Pseudonymization replaces the named fields of each event's JSON data with a token,
`redacted-<32 hex>`: the first 128 bits of HMAC-SHA-256 of the value's JSON under a secret key.
The key comes from a file (`--redact-key-file`: the same key gives the same tokens in every export,
so bundles can be joined) or is generated for the export and then forgotten: it is never written
to the bundle, so nobody holding the bundle can recompute a token from a guessed value (an
unkeyed hash of a username or a common name is recovered by hashing a list of likely values).
Within an export the same value always gives the same token, so uniqueness and joins survive and
a replay of the bundle behaves as production did without the data. Pseudonymizing `username`
renames every `user-<username>` stream to `user-<token of username>`, whatever its events hold,
so a user's events stay one stream and still project.
The bundle is written to a temporary name and renamed at the end: no partial file is left.
Forgetting: the source yields nothing below a stream's truncation (a deletion), so a bundle
exported after a deletion holds of that user only the deletion event and what followed it; a
deletion during the export fails it (`check_forgotten`) rather than leave the user in the file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
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
from repro.history import EventSource, SourceLost, SourceUnavailable
from repro.progress import Progress
from usersvc.events import stream_name, username_from_stream
from usersvc.records import StoredEvent

# A key file must hold at least this many bytes; a generated key has KEY_BYTES.
MIN_KEY_BYTES = 16
KEY_BYTES = 32
TOKEN_HEX = 32  # 128 bits: no two of a billion values share a token
_FINGERPRINT = b"usersvc bundle pseudonym key"


class Pseudonyms:
    """Tokens for the `fields` of events' JSON data, keyed by a secret (see the module)."""

    def __init__(self, key: bytes, fields: Sequence[str]) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ReplayError(
                f"the pseudonym key has {len(key)} bytes; it needs at least {MIN_KEY_BYTES}"
            )
        self._key = key
        self.fields = tuple(fields)
        self._streams = "username" in self.fields

    @classmethod
    def generated(cls, fields: Sequence[str]) -> Pseudonyms:
        """A fresh random key, known only to this object."""
        return cls(secrets.token_bytes(KEY_BYTES), fields)

    def token(self, value: Any) -> str:
        digest = hmac.new(self._key, orjson.dumps(value), hashlib.sha256).hexdigest()
        return "redacted-" + digest[:TOKEN_HEX]

    def fingerprint(self) -> str:
        """Names the key without revealing it (HMAC of a constant): two bundles with the same
        fingerprint were pseudonymized with the same key."""
        return hmac.new(self._key, _FINGERPRINT, hashlib.sha256).hexdigest()[:16]

    def apply(self, event: StoredEvent) -> StoredEvent:
        """The event with `fields` of its JSON data replaced by tokens, and its stream renamed
        when `username` is one of them."""
        if not self.fields:
            return event
        stream = event.stream
        if self._streams:
            username = username_from_stream(stream)
            if username is not None:
                stream = stream_name(self.token(username))
        data = self._data(event)
        if stream == event.stream and data is None:
            return event
        return replace(event, stream=stream, data=event.data if data is None else data)

    def _data(self, event: StoredEvent) -> bytes | None:
        if event.content_type != "application/json":
            return None
        try:
            body = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict) or not any(f in body for f in self.fields):
            return None
        for field in self.fields:
            if field in body:
                body[field] = self.token(body[field])
        return orjson.dumps(body)


def read_key(path: Path) -> bytes:
    """The secret in a key file (a final line break is not part of it); `ReplayError` when it
    cannot be read or is too short."""
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ReplayError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    key = key.removesuffix(b"\n").removesuffix(b"\r")
    if len(key) < MIN_KEY_BYTES:
        raise ReplayError(
            f"the key file {path} holds {len(key)} bytes; a key needs at least {MIN_KEY_BYTES}"
            " (e.g. head -c 32 /dev/urandom > FILE)"
        )
    return key


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
    redact_key: bytes | None = None,
) -> dict[str, Any]:
    """Write the events after `from_position` up to `cutoff` to `output`, with `redact_fields`
    pseudonymized under `redact_key` (a key generated now and forgotten when None); return the
    manifest and trailer. A refused cutoff or a failing source leaves no file; an output that
    could not be written is refused before anything is read."""
    check_output(output)
    cutoff = cutoff or ToEnd()
    pseudonyms = (
        Pseudonyms.generated(redact_fields)
        if redact_key is None
        else Pseudonyms(redact_key, redact_fields)
    )
    manifest = {
        "format": "usersvc-bundle",
        "formatVersion": BUNDLE_VERSION,
        "source": source.label,
        "streamPrefix": source.prefix,
        "fromPosition": from_position,
        "until": cutoff.describe(),
        "redacted": list(redact_fields),
        "redaction": _redaction(pseudonyms, given=redact_key is not None),
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
                writer.write(pseudonyms.apply(event))
                bar.update(1, event.commit_position)
            source.check_forgotten()
            trailer = writer.trailer()
    except SourceLost:
        raise  # the source went away partway: not a refusal (no file is left either way)
    except SourceUnavailable as exc:
        raise ReplayError(str(exc)) from None
    partial.replace(output)
    return {**manifest, **trailer}


def _redaction(pseudonyms: Pseudonyms, *, given: bool) -> dict[str, Any] | None:
    """How the bundle was pseudonymized, for its manifest (never the key)."""
    if not pseudonyms.fields:
        return None
    if not given:
        return {"method": "hmac-sha256", "key": "generated for this export, not kept"}
    return {
        "method": "hmac-sha256",
        "key": "from a key file",
        "keyFingerprint": pseudonyms.fingerprint(),
    }

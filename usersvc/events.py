"""The `user-created` event as the original system writes it, and its codec.

Stream `user-<username>`, type `user-created`, JSON data
`{"username": str, "fullName": str, "openedAt": "<ISO-8601 UTC>"}`. This module is the only place
that knows the wire shape; everything else handles `UserCreated`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

STREAM_PREFIX = "user-"
USER_CREATED = "user-created"
CONTENT_TYPE = "application/json"
SCHEMA_VERSION = 1

# Letters, digits, '.', '_' and '-', 1 to 100 characters: safe in a stream name and a URL path.
USERNAME_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
USERNAME_RE = re.compile(USERNAME_PATTERN)
FULL_NAME_MAX = 100


class MalformedEvent(ValueError):
    """An event of a known type whose data does not follow the contract."""


@dataclass(frozen=True, slots=True)
class UserCreated:
    username: str
    full_name: str
    opened_at: datetime


def stream_name(username: str) -> str:
    return STREAM_PREFIX + username


def username_from_stream(stream: str) -> str | None:
    return stream[len(STREAM_PREFIX) :] if stream.startswith(STREAM_PREFIX) else None


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a `Z`, as JavaScript's toISOString()."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def encode_user_created(event: UserCreated) -> bytes:
    return orjson.dumps(
        {
            "username": event.username,
            "fullName": event.full_name,
            "openedAt": format_timestamp(event.opened_at),
        }
    )


def encode_metadata(correlation_id: str | None = None, traceparent: str | None = None) -> bytes:
    meta: dict[str, Any] = {"schemaVersion": SCHEMA_VERSION}
    if correlation_id:
        meta["correlationId"] = correlation_id
    if traceparent:
        meta["traceparent"] = traceparent
    return orjson.dumps(meta)


def decode_user_created(data: bytes) -> UserCreated:
    """Parse and check a `user-created` payload; raise `MalformedEvent` saying what is wrong."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"data is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedEvent("data is not a JSON object")
    username, full_name = body.get("username"), body.get("fullName")
    opened_at = body.get("openedAt")
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise MalformedEvent(f"username {username!r} is missing or invalid")
    if not isinstance(full_name, str) or not 1 <= len(full_name) <= FULL_NAME_MAX:
        raise MalformedEvent(f"fullName {full_name!r} is missing or invalid")
    if not isinstance(opened_at, str):
        raise MalformedEvent(f"openedAt {opened_at!r} is missing")
    try:
        moment = datetime.fromisoformat(opened_at)
    except ValueError:
        raise MalformedEvent(f"openedAt {opened_at!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise MalformedEvent(f"openedAt {opened_at!r} has no time zone")
    return UserCreated(username=username, full_name=full_name, opened_at=moment)

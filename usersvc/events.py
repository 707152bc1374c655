"""A user's life as events, and their codec: the only place that knows the wire shapes.

Stream `user-<username>`, content type `application/json`, metadata `{"schemaVersion": N, ...}`
(absent means 1). Data, by type (DESIGN §2):
- `user-created` v1, as the original system writes it: `{"username", "fullName", "openedAt"}`;
- `user-full-name-changed` v1: `{"username", "fullName", "changedAt"}`;
- `user-deleted` v1: `{"username", "deletedAt"}`, no other personal data.
Times are ISO-8601 UTC with milliseconds and a `Z`, as JavaScript's `toISOString()`.

`decode_event(type, data, metadata)` is the one decoder for every type and version: it brings
older versions up to date through `usersvc.upcasting`, then checks the result. Everything else
handles the dataclasses below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from usersvc.upcasting import UPCASTERS, UpcastError, Upcasters

STREAM_PREFIX = "user-"
USER_CREATED = "user-created"
FULL_NAME_CHANGED = "user-full-name-changed"
USER_DELETED = "user-deleted"
CONTENT_TYPE = "application/json"
# The version each type is written at today.
SCHEMA_VERSIONS = {USER_CREATED: 1, FULL_NAME_CHANGED: 1, USER_DELETED: 1}
SCHEMA_VERSION = 1  # of metadata written without a type at hand (kept for existing callers)

# Letters, digits, '.', '_' and '-', 1 to 100 characters: safe in a stream name and a URL path.
# What a stored event's username may be (existing histories are read by this rule).
USERNAME_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
USERNAME_RE = re.compile(USERNAME_PATTERN)
USERNAME_MAX = 100
# What a new registration's username must be: the same, but not only dots. `.` and `..` are path
# segments that clients resolve away (RFC 3986 §5.2.4), so `/users/..` could never be fetched.
# Leading dots, then one other character, then any: no lookaround, one way to match (linear).
NEW_USERNAME_PATTERN = r"^\.*[A-Za-z0-9_-][A-Za-z0-9._-]*$"
FULL_NAME_MAX = 100


class MalformedEvent(ValueError):
    """An event of a known type whose data does not follow the contract."""


@dataclass(frozen=True, slots=True)
class UserCreated:
    username: str
    full_name: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class FullNameChanged:
    username: str
    full_name: str
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class UserDeleted:
    username: str
    deleted_at: datetime


UserEvent = UserCreated | FullNameChanged | UserDeleted


def stream_name(username: str) -> str:
    return STREAM_PREFIX + username


def username_from_stream(stream: str) -> str | None:
    return stream[len(STREAM_PREFIX) :] if stream.startswith(STREAM_PREFIX) else None


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a `Z`, as JavaScript's toISOString()."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def event_type(event: UserEvent) -> str:
    match event:
        case UserCreated():
            return USER_CREATED
        case FullNameChanged():
            return FULL_NAME_CHANGED
        case UserDeleted():
            return USER_DELETED


def encode_event(event: UserEvent) -> bytes:
    """The JSON data of `event`, at the type's current schema version."""
    match event:
        case UserCreated(username, full_name, opened_at):
            body = {
                "username": username,
                "fullName": full_name,
                "openedAt": format_timestamp(opened_at),
            }
        case FullNameChanged(username, full_name, changed_at):
            body = {
                "username": username,
                "fullName": full_name,
                "changedAt": format_timestamp(changed_at),
            }
        case UserDeleted(username, deleted_at):
            body = {"username": username, "deletedAt": format_timestamp(deleted_at)}
    return orjson.dumps(body)


def encode_user_created(event: UserCreated) -> bytes:
    return encode_event(event)


def encode_metadata(
    correlation_id: str | None = None,
    traceparent: str | None = None,
    *,
    schema_version: int = SCHEMA_VERSION,
) -> bytes:
    meta: dict[str, Any] = {"schemaVersion": schema_version}
    if correlation_id:
        meta["correlationId"] = correlation_id
    if traceparent:
        meta["traceparent"] = traceparent
    return orjson.dumps(meta)


def schema_version_of(metadata: bytes) -> int:
    """The `schemaVersion` in an event's metadata; absent (or no JSON object) means 1."""
    if not metadata or metadata[:1] != b"{":
        return 1
    try:
        meta = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        return 1
    version = meta.get("schemaVersion", 1) if isinstance(meta, dict) else 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedEvent(f"schemaVersion {version!r} is not a version number")
    return version


def decode_event(
    type_: str, data: bytes, metadata: bytes = b"", *, upcasters: Upcasters = UPCASTERS
) -> UserEvent | None:
    """Decode an event of any version; None for a type that is not a user's event.

    Raises `MalformedEvent` saying what is wrong with an event of a known type.
    """
    current = SCHEMA_VERSIONS.get(type_)
    if current is None:
        return None
    version = schema_version_of(metadata)
    if version > current:
        raise MalformedEvent(f"schemaVersion {version} is newer than this code reads ({current})")
    body = _json_object(data)
    if version < current:
        try:
            body = upcasters.upcast(type_, version, current, body)
        except UpcastError as exc:
            raise MalformedEvent(str(exc)) from None
    username = _username(body)
    if type_ == USER_CREATED:
        return UserCreated(username, _full_name(body), _moment(body, "openedAt"))
    if type_ == FULL_NAME_CHANGED:
        return FullNameChanged(username, _full_name(body), _moment(body, "changedAt"))
    return UserDeleted(username, _moment(body, "deletedAt"))


def decode_user_created(data: bytes) -> UserCreated:
    """Parse and check a `user-created` payload; raise `MalformedEvent` saying what is wrong."""
    event = decode_event(USER_CREATED, data)
    assert isinstance(event, UserCreated)
    return event


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"data is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedEvent("data is not a JSON object")
    return body


def _username(body: dict[str, Any]) -> str:
    username = body.get("username")
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise MalformedEvent(f"username {username!r} is missing or invalid")
    return username


def _full_name(body: dict[str, Any]) -> str:
    full_name = body.get("fullName")
    if not isinstance(full_name, str) or not 1 <= len(full_name) <= FULL_NAME_MAX:
        raise MalformedEvent(f"fullName {full_name!r} is missing or invalid")
    return full_name


def _moment(body: dict[str, Any], key: str) -> datetime:
    value = body.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{key} {value!r} is missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(f"{key} {value!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise MalformedEvent(f"{key} {value!r} has no time zone")
    return moment


def _check_registry() -> None:
    UPCASTERS.check(SCHEMA_VERSIONS)


# A broken chain of upcasters fails every process at start, not on the first old event it reads.
_check_registry()

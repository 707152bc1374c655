"""The JSON shapes of users and events, and the headers every write answers with."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

from service.aggregate import StreamEvent
from service.preconditions import etag
from service.retries import Written
from usersvc.events import encode_event, format_timestamp
from usersvc.lifecycle import User

COMMIT_POSITION_HEADER = "X-Commit-Position"


def user_state(user: User) -> dict[str, Any]:
    """A user folded from its stream: the keys of `GET /users/<u>` in its order, but no `id`
    (that is the read model's row number, which a stream does not know)."""
    return {
        "username": user.username,
        "createdAt": format_timestamp(user.created_at),
        "fullName": user.full_name,
    }


def stream_event(recorded: StreamEvent) -> dict[str, Any]:
    """One event of the history: its data as the current schema version has it (upcast), and
    the version it was written at."""
    return {
        "type": recorded.type,
        "revision": recorded.revision,
        "commitPosition": recorded.commit_position,
        "recordedAt": (
            None if recorded.recorded_at is None else format_timestamp(recorded.recorded_at)
        ),
        "schemaVersion": recorded.schema_version,
        "data": _data(recorded),
    }


def write_headers(written: Written, revision: int | None = None) -> dict[str, str]:
    """`X-Commit-Position` (a client reads its own write through it) and the `ETag` of the
    state the write left (none after a deletion)."""
    headers = {COMMIT_POSITION_HEADER: str(written.commit_position)}
    if revision is not None:
        headers["ETag"] = etag(revision)
    return headers


def empty(status: int, headers: dict[str, str]) -> Response:
    """A response without a body (204, 304), so without a content type either."""
    response = Response(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def _data(recorded: StreamEvent) -> Any:
    if recorded.event is not None:
        return orjson.loads(encode_event(recorded.event))
    try:
        return orjson.loads(recorded.data)
    except orjson.JSONDecodeError:
        return None

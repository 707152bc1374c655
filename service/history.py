"""A user's history and the user at a past point, both read from the stream, not PostgreSQL.

`GET /users/<u>/events[?fromRevision=N&limit=M]` pages through the events of the current life;
`GET /users/<u>?atRevision=N` and `?asOf=<ISO-8601 with zone>` fold them up to that point. Both
need a token for the user (or an administrator's), checked before the stream is read.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from service import context, preconditions
from service.aggregate import UserStream
from service.auth import require_access
from service.errors import RevisionNotFound, UserNotFound, ValidationFailed
from service.preconditions import etag
from service.representations import empty, stream_event, user_state
from usersvc.events import USERNAME_RE
from usersvc.lifecycle import User

blueprint = Blueprint("history", __name__)

AT_REVISION = "atRevision"
AS_OF = "asOf"
TIME_TRAVEL_PARAMETERS = frozenset({AT_REVISION, AS_OF})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# An offset whose `+` arrived as a space (an unencoded `+` in a query string): `12:00:00 02:00`.
_SPACE_FOR_PLUS = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


@blueprint.get("/users/<username>/events")
def events(username: str) -> Response:
    require_access(username)
    from_revision = _natural("fromRevision", request.args.get("fromRevision"), default=0)
    limit = _natural("limit", request.args.get("limit"), default=DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            "limit is out of range",
            [{"field": "limit", "message": f"must be from 1 to {MAX_LIMIT}"}],
        )
    life = _stream(username).life()
    if not life:
        raise UserNotFound(f"no user {username!r}")
    later = [e for e in life if e.revision >= from_revision]
    page, rest = later[:limit], later[limit:]
    next_link = (
        f"/users/{quote(username)}/events?fromRevision={rest[0].revision}&limit={limit}"
        if rest
        else None
    )
    return jsonify({"events": [stream_event(e) for e in page], "next": next_link})


def state_at(username: str) -> Response:
    """`GET /users/<u>?atRevision=N` or `?asOf=T`: the user folded up to that point."""
    require_access(username)
    at_revision = request.args.get(AT_REVISION)
    as_of = request.args.get(AS_OF)
    if at_revision is not None and as_of is not None:
        raise ValidationFailed(
            f"give {AT_REVISION} or {AS_OF}, not both",
            [{"field": AS_OF, "message": f"cannot be combined with {AT_REVISION}"}],
        )
    user: User | None
    if at_revision is not None:
        revision = _natural(AT_REVISION, at_revision, default=0)
        stream = _stream(username)
        latest = stream.revision
        if stream.user is not None and latest is not None and revision > latest:
            raise RevisionNotFound(
                f"{username!r} has no revision {revision} yet; the latest is {latest}"
            )
        user = stream.at_revision(revision)
    else:
        moment = _moment(as_of or "")
        user = _stream(username).as_of(moment)
    if user is None:
        raise UserNotFound(f"{username!r} did not exist at that point")
    tag = etag(user.revision)
    condition = preconditions.parse(request.headers.get("If-None-Match"))
    if condition is not None and condition.matches_weakly(user.revision):
        return empty(304, {"ETag": tag})
    response = jsonify(user_state(user))
    response.headers["ETag"] = tag
    return response


def _stream(username: str) -> UserStream:
    if not USERNAME_RE.fullmatch(username):
        raise UserNotFound(f"no user {username!r}")
    return context.commands().load(username)


def _natural(name: str, value: str | None, *, default: int) -> int:
    """A query parameter that must be a whole number ≥ 0, written in plain digits."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValidationFailed(
            f"{name} must be a whole number",
            [{"field": name, "message": f"{value!r} is not a whole number ≥ 0"}],
        )
    return int(value)


def _moment(value: str) -> datetime:
    """An ISO-8601 time with a zone (`Z` or an offset); a `+` decoded as a space is repaired."""
    text = _SPACE_FOR_PLUS.sub(r"\1+\2", value.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        reason = "has no time zone (add Z or +00:00)" if moment else "is not an ISO-8601 time"
        raise ValidationFailed(
            f"{AS_OF} {reason}", [{"field": AS_OF, "message": f"{value!r} {reason}"}]
        )
    return moment

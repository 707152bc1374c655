"""`POST /users` and `GET /users/<username>` (time travel in `service.history`)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from service import context, freshness, history, idempotency_key, preconditions, request_id
from service.bodies import FORM, JSON, request_object, validated
from service.errors import UserNotFound
from service.models import CreateUser
from service.preconditions import etag
from service.representations import empty, write_headers
from usersvc.events import USERNAME_RE, UserCreated, format_timestamp

blueprint = Blueprint("users", __name__)


@blueprint.post("/users")
def create_user() -> tuple[Response, int, dict[str, str]]:
    key = idempotency_key.current()
    command = validated(CreateUser, request_object((JSON, FORM)))
    written = context.commands().register(
        UserCreated(command.username, command.full_name, datetime.now(UTC)),
        request_id.current(),
        idempotency_key=key,
    )
    body = {
        "username": command.username,
        "commitPosition": written.commit_position,
        "streamRevision": written.revision,
    }
    headers = {"Location": f"/users/{command.username}", **write_headers(written, written.revision)}
    return jsonify(body), 201, headers


@blueprint.get("/users/<username>")
def get_user(username: str) -> Response:
    if history.TIME_TRAVEL_PARAMETERS & request.args.keys():
        return history.state_at(username)
    # A name that breaks the username rule cannot exist: no need to ask the database. fullmatch:
    # the pattern's `$` would also match before a trailing newline.
    freshness.await_position()
    user = context.users().get(username) if USERNAME_RE.fullmatch(username) else None
    if user is None:
        raise UserNotFound(f"no user {username!r}")
    tag = etag(user.revision)
    condition = preconditions.parse(request.headers.get("If-None-Match"))
    if condition is not None and condition.matches_weakly(user.revision):
        return empty(304, {"ETag": tag})
    response = jsonify(
        {
            "id": user.id,
            "username": user.username,
            "createdAt": format_timestamp(user.created_at),
            "fullName": user.full_name,
        }
    )
    response.headers["ETag"] = tag
    return response

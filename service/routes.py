"""`POST /users`, `GET /users/<username>` (time travel in `service.history`) and `GET /health`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from service import context, history, preconditions, request_id
from service.bodies import json_object, validated
from service.errors import ApiError, UserNotFound
from service.models import CreateUser
from service.preconditions import etag
from service.representations import empty, write_headers
from service.users import Checkpoint
from usersvc.events import USERNAME_RE, UserCreated, format_timestamp

blueprint = Blueprint("users", __name__)


@blueprint.post("/users")
def create_user() -> tuple[Response, int, dict[str, str]]:
    command = validated(CreateUser, json_object())
    written = context.commands().register(
        UserCreated(command.username, command.full_name, datetime.now(UTC)),
        request_id.current(),
        idempotent=request_id.from_client(),
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


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    checks: dict[str, Any] = {}
    problems: list[str] = []
    head: int | None = None
    checkpoint: Checkpoint | None = None
    try:
        head = context.event_store().head_position()
        checks["eventStore"] = {"status": "up", "headPosition": head}
    except ApiError as exc:
        checks["eventStore"] = {"status": "down", "error": exc.message}
        problems.append("event_store_unavailable")
    try:
        checkpoint = context.users().checkpoint(current_app.config["WORKER_NAME"])
        checks["database"] = {"status": "up"}
    except ApiError as exc:
        checks["database"] = {"status": "down", "error": exc.message}
        problems.append("database_unavailable")
    if head is not None and "database_unavailable" not in problems:
        checks["projection"] = _projection(head, checkpoint, problems)
    status = 200 if not problems else 503
    return jsonify(
        {"status": "ok" if not problems else "failing", "problems": problems, "checks": checks}
    ), status


def _projection(head: int, checkpoint: Checkpoint | None, problems: list[str]) -> dict[str, Any]:
    position = checkpoint.commit_position if checkpoint else 0
    behind = position < head
    report: dict[str, Any] = {"checkpoint": position, "behind": behind}
    if checkpoint is not None:
        report["lastCommitAt"] = format_timestamp(checkpoint.updated_at)
    idle = (
        (datetime.now(UTC) - checkpoint.updated_at).total_seconds()
        if checkpoint is not None
        else None
    )
    if behind and (idle is None or idle > current_app.config["HEALTH_STALL_SECONDS"]):
        report["status"] = "stalled"
        problems.append("projection_stalled")
    else:
        report["status"] = "behind" if behind else "caught_up"
    return report

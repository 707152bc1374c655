"""`POST /users`, `GET /users/<username>` and `GET /health`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service import request_id
from service.errors import (
    ApiError,
    InvalidJson,
    UnsupportedMediaType,
    UserNotFound,
    ValidationFailed,
)
from service.event_store import Appended
from service.models import CreateUser
from service.users import Checkpoint, User
from usersvc.events import USERNAME_RE, UserCreated, format_timestamp

blueprint = Blueprint("users", __name__)


class EventStorePort(Protocol):
    def create_user(
        self, user: UserCreated, correlation_id: str, *, idempotent: bool = False
    ) -> Appended: ...
    def head_position(self) -> int: ...


class UsersPort(Protocol):
    def get(self, username: str) -> User | None: ...
    def checkpoint(self, name: str) -> Checkpoint | None: ...


def _event_store() -> EventStorePort:
    store: EventStorePort = current_app.extensions["usersvc.event_store"]
    return store


def _users() -> UsersPort:
    repo: UsersPort = current_app.extensions["usersvc.users"]
    return repo


@blueprint.post("/users")
def create_user() -> tuple[Response, int, dict[str, str]]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        body = orjson.loads(_body())
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object", [{"field": "", "message": "expected an object"}]
        )
    try:
        command = CreateUser.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(
            "some fields are invalid",
            [
                {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                for err in exc.errors()
            ],
        ) from None
    appended = _event_store().create_user(
        UserCreated(command.username, command.full_name, datetime.now(UTC)),
        request_id.current(),
        idempotent=request_id.from_client(),
    )
    body_out = {
        "username": command.username,
        "commitPosition": appended.commit_position,
        "streamRevision": appended.stream_revision,
    }
    return jsonify(body_out), 201, {"Location": f"/users/{command.username}"}


def _body() -> bytes:
    """The request body; a chunked one (no Content-Length) reaching the limit is refused.

    Werkzeug checks Content-Length up front but cuts a chunked body at the limit silently.
    """
    data = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()
    return data


@blueprint.get("/users/<username>")
def get_user(username: str) -> Response:
    # A name that breaks the username rule cannot exist: no need to ask the database. fullmatch:
    # the pattern's `$` would also match before a trailing newline.
    user = _users().get(username) if USERNAME_RE.fullmatch(username) else None
    if user is None:
        raise UserNotFound(f"no user {username!r}")
    return jsonify(
        {
            "id": user.id,
            "username": user.username,
            "createdAt": format_timestamp(user.created_at),
            "fullName": user.full_name,
        }
    )


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    checks: dict[str, Any] = {}
    problems: list[str] = []
    head: int | None = None
    checkpoint: Checkpoint | None = None
    try:
        head = _event_store().head_position()
        checks["eventStore"] = {"status": "up", "headPosition": head}
    except ApiError as exc:
        checks["eventStore"] = {"status": "down", "error": exc.message}
        problems.append("event_store_unavailable")
    try:
        checkpoint = _users().checkpoint(current_app.config["WORKER_NAME"])
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

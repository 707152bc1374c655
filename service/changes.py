"""`PATCH /users/<username>` and `DELETE /users/<username>`: conditional writes through the
aggregate (`service.commands`), each allowed only to the user's own token or an administrator's.

Order of checks, each before anything is read: the token (401/403), `If-Match` present (428),
then for PATCH the body (415/400/422); then the stream is read and the revision compared (412).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from service import preconditions, request_id
from service.auth import require_access
from service.bodies import JSON, MERGE_PATCH, json_object, validated
from service.context import commands
from service.errors import PreconditionRequired, UserNotFound
from service.models import ChangeUser
from service.preconditions import Condition
from service.representations import empty, user_state, write_headers
from usersvc.events import USERNAME_RE

blueprint = Blueprint("changes", __name__)


@blueprint.patch("/users/<username>")
def change_user(username: str) -> tuple[Response, int, dict[str, str]]:
    require_access(username)
    condition = _if_match(allow_any=False)
    command = validated(ChangeUser, json_object((JSON, MERGE_PATCH)))
    _possible(username)
    changed = commands().change_full_name(
        username, condition, command.full_name, request_id.current()
    )
    headers = write_headers(changed.written, changed.user.revision)
    return jsonify(user_state(changed.user)), 200, headers


@blueprint.delete("/users/<username>")
def delete_user(username: str) -> Response:
    require_access(username)
    condition = _if_match(allow_any=True)
    _possible(username)
    written = commands().delete(username, condition, request_id.current())
    return empty(204, write_headers(written))


def _if_match(*, allow_any: bool) -> Condition:
    condition = preconditions.parse(request.headers.get("If-Match"))
    if condition is None:
        raise PreconditionRequired(
            'send If-Match with the ETag you read, e.g. If-Match: "3" (GET /users/<username> '
            "answers it)" + (", or *" if allow_any else "")
        )
    if condition.any and not allow_any:
        raise PreconditionRequired(
            'a change needs If-Match with the revision it was decided on, e.g. If-Match: "3"; '
            "* would overwrite whatever is there"
        )
    return condition


def _possible(username: str) -> None:
    """A name that breaks the username rule has no stream: 404 without reading."""
    if not USERNAME_RE.fullmatch(username):
        raise UserNotFound(f"no user {username!r}")

"""`X-Request-ID`: taken from the client or made up, echoed on every response, and in every JSON
log line written while the request is handled (`request_id`).

On `POST /users` it becomes the event's `correlationId`; a client-supplied one also makes the
request idempotent when it has no `Idempotency-Key` (see `service.idempotency_key`).
"""

from __future__ import annotations

import uuid

from flask import Flask, Response, g, request

from usersvc import logformat

HEADER = "X-Request-ID"
# Longer values are cut (they go into every event's metadata).
MAX_LENGTH = 200


def install(app: Flask) -> None:
    app.before_request(_take)
    app.after_request(_echo)
    app.teardown_request(_unbind)


def current() -> str:
    """This request's id (the client's, or a fresh UUID)."""
    if "request_id" not in g:
        _take()
    value: str = g.request_id
    return value


def from_client() -> bool:
    """Whether the client sent the id (a retry of the same request can be recognised)."""
    current()
    supplied: bool = g.request_id_supplied
    return supplied


def _take() -> None:
    supplied = "".join(ch for ch in request.headers.get(HEADER, "") if ch.isprintable())
    supplied = supplied.strip()[:MAX_LENGTH]
    g.request_id = supplied or str(uuid.uuid4())
    g.request_id_supplied = bool(supplied)
    g.request_log_token = logformat.bind(request_id=g.request_id)


def _echo(response: Response) -> Response:
    response.headers[HEADER] = current()
    return response


def _unbind(error: BaseException | None) -> None:
    token = g.pop("request_log_token", None)
    if token is not None:
        logformat.unbind(token)

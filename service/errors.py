"""The service's errors and the one place they become JSON responses.

Every error body is `{"error": {"code": <stable machine code>, "message": <for people>,
"details": [...]?}}`. No stack trace or HTML page ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from service import request_id
from usersvc.tokens import ADMIN_SCOPE

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
AUTH_REALM = "usersvc"

# Codes for the HTTP errors Flask and Werkzeug raise themselves.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        return {}


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class InvalidForm(ApiError):
    status, code = 400, "invalid_form"


class InvalidBody(ApiError):
    """The body could not be read as sent: a malformed chunked encoding, a connection cut."""

    status, code = 400, "malformed_body"


class DuplicateKey(ApiError):
    status, code = 400, "duplicate_key"


class InvalidIdempotencyKey(ApiError):
    status, code = 400, "invalid_idempotency_key"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    status, code = 422, "validation_failed"


class UsernameTaken(ApiError):
    status, code = 409, "username_taken"


class UserNotFound(ApiError):
    status, code = 404, "user_not_found"


class RevisionNotFound(ApiError):
    status, code = 404, "revision_not_found"


class PreconditionRequired(ApiError):
    status, code = 428, "precondition_required"


class PreconditionFailed(ApiError):
    """The client's `If-Match` is not the user's current revision; the answer names it."""

    status, code = 412, "precondition_failed"

    def __init__(self, message: str, current_etag: str) -> None:
        super().__init__(message)
        self.current_etag = current_etag

    def headers(self) -> dict[str, str]:
        return {"ETag": self.current_etag}


class Unauthenticated(ApiError):
    """No bearer token, or one that is not valid: RFC 6750's challenge says which."""

    status, code = 401, "unauthenticated"

    def __init__(self, message: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.error = error

    def headers(self) -> dict[str, str]:
        challenge = f'Bearer realm="{AUTH_REALM}"'
        if self.error is not None:
            description = self.message.replace("\\", "").replace('"', "'")
            challenge += f', error="{self.error}", error_description="{description}"'
        return {"WWW-Authenticate": challenge}


class Forbidden(ApiError):
    """A valid token that speaks for someone else and is not an administrator's."""

    status, code = 403, "forbidden"

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{AUTH_REALM}", error="insufficient_scope", scope="{ADMIN_SCOPE}"'
            )
        }


class AuthNotConfigured(ApiError):
    status, code = 500, "auth_not_configured"


class EventUnreadable(ApiError):
    """A stored event of the user's stream that this code cannot decode."""

    status, code = 500, "event_unreadable"


class Unavailable(ApiError):
    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


class EventStoreUnavailable(Unavailable):
    code = "event_store_unavailable"


class AppendOutcomeUnknown(EventStoreUnavailable):
    """An append failed after it may have reached EventStoreDB: it may have been written. The
    message says how to find out safely (a retry with the same idempotency key)."""

    code = "append_outcome_unknown"


class EventStoreBusy(EventStoreUnavailable):
    """This process already has as many EventStoreDB calls in flight as it allows, and none
    ended within the wait: EventStoreDB is slow or hangs. Nothing was sent."""

    code = "event_store_busy"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class ProjectionBehind(Unavailable):
    """A read asked for a commit position (`X-Min-Position`) the worker has not applied in time;
    the answer names the checkpoint it has reached."""

    code = "projection_behind"
    retry_after = 1

    def __init__(self, message: str, min_position: int, checkpoint: int | None) -> None:
        super().__init__(message, [{"minPosition": min_position, "checkpoint": checkpoint}])
        self.checkpoint = checkpoint

    def headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after)}
        if self.checkpoint is not None:
            headers["X-Checkpoint-Position"] = str(self.checkpoint)
        return headers


class AuthUnavailable(Unavailable):
    """The identity provider's key set (JWKS) cannot be fetched."""

    code = "auth_unavailable"


def with_cause(error: ApiError) -> str:
    """The error's message and, when it has one, its cause's class and text: for the log only
    (a driver's text may hold addresses and server messages)."""
    cause = error.__cause__
    return error.message if cause is None else f"{error.message} ({type(cause).__name__}: {cause})"


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        if error.status >= 500:
            log.warning("%s (request %s): %s", error.code, request_id.current(), with_cause(error))
        return error_response(
            error.status, error.code, error.message, error.details, error.headers()
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = error_response(
            status, _HTTP_CODES.get(status, "http_error"), error.description or error.name
        )
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error (request %s)", request_id.current())
        return error_response(500, "internal_error", "internal error; it has been logged")

"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models.

Request bodies are `service.models`, the models the routes validate with; answers are
`service.schemas`. pydantic writes JSON Schema 2020-12, which OpenAPI 3.1 uses as it is, so the
models' schemas go into `components.schemas` unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service import schemas
from service.bodies import FORM, JSON, MERGE_PATCH
from service.models import ChangeUser, CreateUser
from usersvc.events import USERNAME_PATTERN

VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (CreateUser, "validation"),
    (ChangeUser, "validation"),
    (schemas.User, "serialization"),
    (schemas.UserState, "serialization"),
    (schemas.Created, "serialization"),
    (schemas.History, "serialization"),
    (schemas.Error, "serialization"),
    (schemas.Live, "serialization"),
    (schemas.Readiness, "serialization"),
]
_STATUS_TEXT = {
    400: (
        "the body is not valid JSON or form data, gives a key twice, or cannot be read as sent; "
        "or the Idempotency-Key is malformed"
    ),
    401: "no valid bearer token (see WWW-Authenticate)",
    403: "the token is for another user and not an administrator's",
    404: "no such user (or it is deleted)",
    409: "the username is taken",
    412: "If-Match is not the current revision (the current ETag is in the answer)",
    413: "the body is larger than 16 KiB",
    415: "the body's Content-Type is not one this operation takes",
    422: "a field or parameter is invalid (details name each)",
    428: "If-Match is missing",
    503: (
        "a dependency is unavailable or too slow, or the projection is behind X-Min-Position; "
        "retry later (append_outcome_unknown: the write may have been made, see the message)"
    ),
}


def build(*, metrics: bool) -> dict[str, Any]:
    """The whole document; `/metrics` is in it when the metrics are served."""
    _, definitions = models_json_schema(_MODELS, ref_template=_REF)
    paths: dict[str, Any] = {
        "/users": {"post": _create()},
        "/users/{username}": {"get": _get(), "patch": _patch(), "delete": _delete()},
        "/users/{username}/events": {"get": _history()},
        "/livez": {"get": _probe("livez", "The process serves (looks at nothing else).", "Live")},
        "/readyz": {"get": _readiness("readyz", deprecated=False)},
        "/health": {"get": _readiness("health", deprecated=True)},
        "/openapi.json": {"get": _spec()},
    }
    if metrics:
        paths["/metrics"] = {"get": _metrics()}
    return {
        "openapi": VERSION,
        "info": {
            "title": "usersvc",
            "version": "1",
            "description": (
                "An event-sourced user service. Every write answers its commit position "
                "(`X-Commit-Position`); send it back as `X-Min-Position` on a read through any "
                "replica to read your own write."
            ),
        },
        "tags": [
            {"name": "users", "description": "A user's whole life, from its events"},
            {"name": "operations", "description": "Probes, metrics and this document"},
        ],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "headers": _HEADERS,
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _answer(
    description: str, schema: dict[str, Any] | None = None, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "headers": {name: _header_ref(name) for name in ("X-Request-ID", *headers)},
    }
    if schema is not None:
        answer["content"] = _json(schema)
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    extra: dict[int, tuple[str, ...]] = {
        401: ("WWW-Authenticate",),
        403: ("WWW-Authenticate",),
        412: ("ETag",),
        503: ("Retry-After",),
    }
    return {
        str(status): _answer(_STATUS_TEXT[status], _ref("Error"), extra.get(status, ()))
        for status in statuses
    }


_USERNAME = {
    "name": "username",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": USERNAME_PATTERN},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'the ETag the change was decided on, e.g. "3" (428 without it)',
    "schema": {"type": "string"},
}
_NATURAL = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_HEADERS: dict[str, Any] = {
    "X-Request-ID": {
        "description": "the client's request id, or a fresh one; the events' correlationId",
        "schema": {"type": "string"},
    },
    "X-Commit-Position": {
        "description": "the write's position in $all: send it as X-Min-Position",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "X-Checkpoint-Position": {
        "description": "the position the read model has reached",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "ETag": {"description": 'the revision, e.g. "3"', "schema": {"type": "string"}},
    "Location": {"description": "the new user's path", "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds", "schema": {"type": "string"}},
    "WWW-Authenticate": {"description": "RFC 6750's challenge", "schema": {"type": "string"}},
}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _create() -> dict[str, Any]:
    return {
        "operationId": "createUser",
        "summary": "Register a user",
        "description": (
            "Appends `user-created` expecting no stream (or a deleted user's). Takes JSON, and "
            "an HTML form's encoding as the original service did. An `Idempotency-Key` (or a "
            "client-chosen `X-Request-ID`) makes a retry of the same request recognisable; "
            "without one, the same body sent again soon after is answered as a retry while the "
            "user is unchanged."
        ),
        "tags": ["users"],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    'a key the client chooses, e.g. "8e03978e-40d5-43e8-bc93-6894a57f9324" '
                    "(quoted or bare, printable ASCII, 1 to 200 characters): the same request "
                    "sent again with it answers as the first did"
                ),
                "schema": {"type": "string"},
            },
            {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": (
                    "cut to its first 200 characters; the key of a retry when there is no "
                    "Idempotency-Key"
                ),
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _ref("CreateUser")}, FORM: {"schema": _ref("CreateUser")}},
        },
        "responses": {
            "201": _answer(
                "registered", _ref("Created"), ("Location", "ETag", "X-Commit-Position")
            ),
            **_errors(400, 409, 413, 415, 422, 503),
        },
    }


def _get() -> dict[str, Any]:
    return {
        "operationId": "getUser",
        "summary": "Read a user, now or at a past point",
        "description": (
            "Without `atRevision` or `asOf`: the read model's row, open to anyone; with "
            "`X-Min-Position` it waits (at most a few seconds) until the worker has applied "
            "that commit position. With `atRevision` or `asOf` (the user's or an "
            "administrator's token): the state folded from the stream at that point, no `id`."
        ),
        "tags": ["users"],
        "security": [{}, *_AUTH],
        "parameters": [
            _USERNAME,
            {"name": "atRevision", "in": "query", "required": False, "schema": _NATURAL},
            {
                "name": "asOf",
                "in": "query",
                "required": False,
                "description": "ISO-8601 with a zone, e.g. 2026-01-02T03:04:05Z",
                "schema": {"type": "string", "format": "date-time"},
            },
            {
                "name": "X-Min-Position",
                "in": "header",
                "required": False,
                "description": "a commit position a write answered: read at least that fresh",
                "schema": _NATURAL,
            },
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _answer("the user", {"anyOf": [_ref("User"), _ref("UserState")]}, ("ETag",)),
            "304": _answer("not modified since the ETag given", None, ("ETag",)),
            **_errors(401, 403, 404, 422, 503),
        },
    }


def _patch() -> dict[str, Any]:
    return {
        "operationId": "changeUser",
        "summary": "Change a user's full name",
        "description": "A JSON merge patch; needs `If-Match` with the ETag it was decided on.",
        "tags": ["users"],
        "security": _AUTH,
        "parameters": [_USERNAME, _IF_MATCH],
        "requestBody": {
            "required": True,
            "content": {
                MERGE_PATCH: {"schema": _ref("ChangeUser")},
                JSON: {"schema": _ref("ChangeUser")},
            },
        },
        "responses": {
            "200": _answer("the changed user", _ref("UserState"), ("ETag", "X-Commit-Position")),
            **_errors(400, 401, 403, 404, 412, 413, 415, 422, 428, 503),
        },
    }


def _delete() -> dict[str, Any]:
    return {
        "operationId": "deleteUser",
        "summary": "Delete a user and forget its personal data",
        "tags": ["users"],
        "security": _AUTH,
        "parameters": [_USERNAME, {**_IF_MATCH, "description": 'the ETag, or "*"'}],
        "responses": {
            "204": _answer("deleted", None, ("X-Commit-Position",)),
            **_errors(401, 403, 404, 412, 428, 503),
        },
    }


def _history() -> dict[str, Any]:
    return {
        "operationId": "userHistory",
        "summary": "The events of a user's current life, a page at a time",
        "tags": ["users"],
        "security": _AUTH,
        "parameters": [
            _USERNAME,
            {"name": "fromRevision", "in": "query", "required": False, "schema": _NATURAL},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        ],
        "responses": {
            "200": _answer("a page of events", _ref("History")),
            **_errors(401, 403, 404, 422, 503),
        },
    }


def _probe(operation: str, summary: str, schema: str) -> dict[str, Any]:
    return {
        "operationId": operation,
        "summary": summary,
        "tags": ["operations"],
        "responses": {"200": _answer("serving", _ref(schema))},
    }


def _readiness(operation: str, *, deprecated: bool) -> dict[str, Any]:
    readiness = _ref("Readiness")
    return {
        "operationId": operation,
        "summary": "EventStoreDB, PostgreSQL and the projection answer"
        + (" (the same as /readyz, kept for existing callers)" if deprecated else ""),
        "tags": ["operations"],
        "deprecated": deprecated,
        "responses": {
            "200": _answer("ready", readiness),
            "503": _answer("not ready: `problems` says why", readiness),
        },
    }


def _spec() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["operations"],
        "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"})},
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics of every process of this service",
        "tags": ["operations"],
        "responses": {
            "200": {
                "description": "the text exposition format",
                "headers": {"X-Request-ID": _header_ref("X-Request-ID")},
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }

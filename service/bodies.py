"""Request bodies: media type, size, JSON or a form, and pydantic validation, each failure one
JSON error.

JSON is parsed by orjson (strict: UTF-8, no NaN, no lone surrogates), and an object that gives a
key twice is refused (`400 duplicate_key`): parsers disagree on which of the two wins, so a
gateway or a log that read the body could have seen another value than the one stored. A body
the server cannot read as sent (a malformed chunked encoding, a connection cut short) is
`400 malformed_body`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from service import request_id
from service.errors import (
    DuplicateKey,
    InvalidBody,
    InvalidForm,
    InvalidJson,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# `POST /users` also takes an HTML form's encoding, as the original service did.
FORM = "application/x-www-form-urlencoded"
# More fields than any model has: the rest is refused before it is decoded.
MAX_FORM_FIELDS = 20
# Characters of a client's key shown back in an error.
MAX_KEY_SHOWN = 100

Model = TypeVar("Model", bound=BaseModel)


def json_object(media_types: Collection[str] = (JSON,)) -> dict[str, Any]:
    """The request's body: a JSON object sent as one of `media_types`."""
    if request.mimetype not in media_types:
        raise UnsupportedMediaType(f"send the body as {' or '.join(media_types)}")
    raw = _raw()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(
            f"the body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    _refuse_duplicate_keys(raw)
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object", [{"field": "", "message": "expected an object"}]
        )
    return body


def request_object(media_types: Collection[str]) -> dict[str, Any]:
    """The request's body as an object: JSON, or a form when `FORM` is one of `media_types`
    (each field once; its values are strings, validated like JSON's)."""
    if request.mimetype == FORM and FORM in media_types:
        return _form()
    return json_object(media_types)


def validated(model: type[Model], body: dict[str, Any]) -> Model:
    """`body` as `model`, or 422 naming each bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(
            "some fields are invalid",
            [
                {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                for err in exc.errors()
            ],
        ) from None


def _raw() -> bytes:
    """The request body; a chunked one (no Content-Length) reaching the limit is refused.

    Werkzeug checks Content-Length up front but cuts a chunked body at the limit silently.
    """
    try:
        data = request.get_data(cache=False)
    except ClientDisconnected:
        raise InvalidBody("the body ended before its declared end (cut short)") from None
    except HTTPException:
        raise
    except Exception as exc:  # the WSGI server's reader: its classes are its own
        log.info(
            "the body of request %s could not be read: %s: %s",
            request_id.current(),
            type(exc).__name__,
            exc,
        )
        raise InvalidBody(
            "the body could not be read as sent (a malformed chunked encoding, or cut short)"
        ) from None
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()
    return data


def _refuse_duplicate_keys(raw: bytes) -> None:
    """`DuplicateKey` when an object of the (valid) JSON document `raw` gives a key twice."""

    def unique(pairs: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key[:MAX_KEY_SHOWN]
                raise DuplicateKey(
                    f"the key {shown!r} is given more than once in one object",
                    [{"field": shown, "message": "give each key once"}],
                )
            seen.add(key)

    try:
        json.loads(raw, object_pairs_hook=unique)
    except RecursionError:
        raise InvalidJson("the body is nested too deeply") from None


def _form() -> dict[str, Any]:
    try:
        pairs = parse_qsl(
            _raw().decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise InvalidForm("the form is not valid UTF-8 (percent-encoded or not)") from None
    except ValueError:
        raise InvalidForm(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    body: dict[str, Any] = {}
    for name, value in pairs:
        if name in body:
            raise ValidationFailed(
                "a field is given more than once",
                [{"field": name, "message": "give each field once"}],
            )
        body[name] = value
    return body

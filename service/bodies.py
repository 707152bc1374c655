"""Request bodies: media type, size, JSON, and pydantic validation, each failure one JSON error."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

import orjson
from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service.errors import InvalidJson, UnsupportedMediaType, ValidationFailed

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

Model = TypeVar("Model", bound=BaseModel)


def json_object(media_types: Collection[str] = (JSON,)) -> dict[str, Any]:
    """The request's body: a JSON object sent as one of `media_types`."""
    if request.mimetype not in media_types:
        raise UnsupportedMediaType(f"send the body as {' or '.join(media_types)}")
    try:
        body = orjson.loads(_raw())
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object", [{"field": "", "message": "expected an object"}]
        )
    return body


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
    data = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()
    return data

"""Request bodies, validated with pydantic; the rules are the event contract's."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from usersvc.events import FULL_NAME_MAX, NEW_USERNAME_PATTERN, USERNAME_MAX


def _printable_name(value: str) -> str:
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class CreateUser(BaseModel):
    """`POST /users`: unknown fields are refused, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    username: str = Field(
        pattern=NEW_USERNAME_PATTERN,
        min_length=1,
        max_length=USERNAME_MAX,
        description="letters, digits, . _ -; 1-100; not only dots",
    )
    full_name: str = Field(alias="fullName", min_length=1, max_length=FULL_NAME_MAX)

    @field_validator("full_name")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _printable_name(value)


class ChangeUser(BaseModel):
    """`PATCH /users/<username>`, a JSON merge patch of what may change: `fullName`.

    `{}` changes nothing; `null` would remove the full name, which every user must have; any other
    field (also `username`, `createdAt`, `id`) is refused.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    # The document says what a client may send: a string (null is refused, see below).
    full_name: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": FULL_NAME_MAX}),
    ] = Field(default=None, alias="fullName", min_length=1, max_length=FULL_NAME_MAX)

    @field_validator("full_name", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be removed: every user has a full name")
        return value

    @field_validator("full_name")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _printable_name(value)

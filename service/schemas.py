"""The shapes of the service's answers, as pydantic models for the OpenAPI document.

The request bodies are `service.models` (the very models the routes validate with); these
describe what the routes answer, key for key in the order they answer it. The Schemathesis test
checks every answer against them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from usersvc.events import USERNAME_PATTERN


class _Answer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class User(_Answer):
    """A user as the read model has it (`GET /users/<username>`), keys in the original's order."""

    id: int = Field(description="the read model's row number")
    username: str = Field(pattern=USERNAME_PATTERN)
    created_at: datetime = Field(alias="createdAt", description="UTC, milliseconds, `Z`")
    full_name: str = Field(alias="fullName")


class UserState(_Answer):
    """A user folded from its stream (PATCH, time travel): no `id`, which only the read model
    has."""

    username: str = Field(pattern=USERNAME_PATTERN)
    created_at: datetime = Field(alias="createdAt")
    full_name: str = Field(alias="fullName")


class Created(_Answer):
    """`POST /users`: where the `user-created` event went."""

    username: str = Field(pattern=USERNAME_PATTERN)
    commit_position: int = Field(
        alias="commitPosition", description="its position in $all; send it as X-Min-Position"
    )
    stream_revision: int = Field(alias="streamRevision", description="its revision: the ETag")


class HistoryEvent(_Answer):
    type: str = Field(description="user-created, user-full-name-changed or user-deleted")
    revision: int
    commit_position: int = Field(alias="commitPosition")
    recorded_at: datetime | None = Field(alias="recordedAt")
    schema_version: int = Field(alias="schemaVersion")
    data: dict[str, Any] | None = Field(description="the event as the current schema has it")


class History(_Answer):
    """`GET /users/<username>/events`: one page of the current life's events."""

    events: list[HistoryEvent]
    next: str | None = Field(description="the next page's path, or null on the last page")


class ErrorDetail(_Answer):
    model_config = ConfigDict(extra="allow")


class ErrorContent(_Answer):
    code: str = Field(description="stable, for machines: e.g. username_taken")
    message: str = Field(description="for people")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="what exactly was wrong, e.g. each invalid field"
    )


class Error(_Answer):
    """Every error, whatever its status."""

    error: ErrorContent


class Live(_Answer):
    status: Literal["ok"]


class Readiness(_Answer):
    status: Literal["ok", "failing"]
    problems: list[str] = Field(
        description=(
            "event_store_unavailable, database_unavailable, projection_stalled, "
            "checkpoint_ahead_of_store"
        )
    )
    checks: dict[str, dict[str, Any]] = Field(
        description="eventStore, database and projection, each with its status"
    )

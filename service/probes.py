"""Probes: `/livez` (the process serves), `/readyz` (its dependencies and the projection answer),
and `/health`, the same report as `/readyz`, kept for existing callers.

A liveness probe that looked at PostgreSQL would make an orchestrator restart healthy processes
during a database outage; so `/livez` looks at nothing but the process, and only readiness (take
this replica out of the load balancer) follows the dependencies.

The projection is `stalled` when it is behind the newest user event and its checkpoint has not
moved for `HEALTH_STALL_SECONDS`, but not in the first `HEALTH_STARTUP_GRACE` seconds of this
process (`starting`): at start-up the worker is often still catching up on what was written while
it was down. It is `ahead` when its checkpoint is past the newest event of `$all`: the store has
lost history the read model was built from (restored from an old backup, a log cut short), and
nothing new will be projected until positions pass the checkpoint again.

Streams the worker parked at an event it cannot apply (worker/parking.py) make the answer
`degraded`, with their count, and still 200: every other stream is projected.

The answers name what failed, never how: drivers' messages go to the log.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from service import context, request_id
from service.errors import ApiError, with_cause
from service.users import Checkpoint
from usersvc.events import format_timestamp

log = logging.getLogger(__name__)
blueprint = Blueprint("probes", __name__)


@blueprint.get("/livez")
def livez() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    return _readiness()


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    return _readiness()


def _readiness() -> tuple[Response, int]:
    checks: dict[str, Any] = {}
    problems: list[str] = []
    head: int | None = None
    checkpoint: Checkpoint | None = None
    try:
        head = context.event_store().head_position()
        checks["eventStore"] = {"status": "up", "headPosition": head}
    except ApiError as exc:
        checks["eventStore"] = _down(exc)
        problems.append("event_store_unavailable")
    parked = 0
    try:
        checkpoint = context.users().checkpoint(current_app.config["WORKER_NAME"])
        parked = context.users().parked_streams(current_app.config["WORKER_NAME"])
        checks["database"] = {"status": "up"}
    except ApiError as exc:
        checks["database"] = _down(exc)
        problems.append("database_unavailable")
    if head is not None and "database_unavailable" not in problems:
        checks["projection"] = _projection(head, checkpoint, problems)
    if parked:
        # Ready all the same (every other stream is projected), but someone should look.
        checks["parked"] = {"status": "degraded", "streams": parked}
    status = "failing" if problems else "degraded" if parked else "ok"
    return jsonify({"status": status, "problems": problems, "checks": checks}), (
        503 if problems else 200
    )


def _down(exc: ApiError) -> dict[str, Any]:
    """A failed check as the probe shows it; the cause, with its driver's text, is logged."""
    log.warning("%s (request %s): %s", exc.code, request_id.current(), with_cause(exc))
    return {"status": "down", "error": exc.message}


def _projection(head: int, checkpoint: Checkpoint | None, problems: list[str]) -> dict[str, Any]:
    position = checkpoint.commit_position if checkpoint else 0
    behind = position < head
    report: dict[str, Any] = {"checkpoint": position, "behind": behind}
    if checkpoint is not None:
        report["lastCommitAt"] = format_timestamp(checkpoint.updated_at)
    if position > head and _past_all(position, report):
        report["status"] = "ahead"
        problems.append("checkpoint_ahead_of_store")
        return report
    idle = (
        (datetime.now(UTC) - checkpoint.updated_at).total_seconds()
        if checkpoint is not None
        else None
    )
    if not behind:
        report["status"] = "caught_up"
    elif idle is not None and idle <= current_app.config["HEALTH_STALL_SECONDS"]:
        report["status"] = "behind"
    elif (
        time.monotonic() - current_app.config["STARTED_AT"]
        < current_app.config["HEALTH_STARTUP_GRACE"]
    ):
        report["status"] = "starting"
    else:
        report["status"] = "stalled"
        problems.append("projection_stalled")
    return report


def _past_all(position: int, report: dict[str, Any]) -> bool:
    """Whether `position` is past the newest event of `$all` (the checkpoint may well be past the
    newest user event: the worker also moves it over other events). Unknown counts as no."""
    try:
        newest = context.event_store().all_position()
    except ApiError:
        return False
    report["allHeadPosition"] = newest
    return position > newest

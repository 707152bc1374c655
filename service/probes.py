"""Probes: `/livez` (the process serves), `/readyz` (its dependencies and the projection answer),
and `/health`, the same report as `/readyz`, kept for existing callers.

A liveness probe that looked at PostgreSQL would make an orchestrator restart healthy processes
during a database outage; so `/livez` looks at nothing but the process, and only readiness (take
this replica out of the load balancer) follows the dependencies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from service import context
from service.errors import ApiError
from service.users import Checkpoint
from usersvc.events import format_timestamp

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
        checks["eventStore"] = {"status": "down", "error": exc.message}
        problems.append("event_store_unavailable")
    try:
        checkpoint = context.users().checkpoint(current_app.config["WORKER_NAME"])
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

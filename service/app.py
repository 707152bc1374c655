"""The Flask application factory: the service's composition root."""

from __future__ import annotations

from typing import Any

from flask import Flask
from psycopg_pool import ConnectionPool

from service import (
    auth,
    changes,
    context,
    docs,
    freshness,
    history,
    metrics,
    probes,
    request_id,
    routes,
)
from service.commands import StorePort, UserCommands
from service.errors import register_error_handlers
from service.event_store import EventStore
from service.users import UserRepository
from usersvc.settings import Settings

MAX_BODY_BYTES = 16 * 1024
# Marks "build the verifier from the settings" apart from an explicit None (no key: 500).
_FROM_SETTINGS: Any = object()


def create_app(
    settings: Settings,
    *,
    event_store: context.EventStorePort | None = None,
    users: context.UsersPort | None = None,
    verifier: auth.TokenVerifier | None = _FROM_SETTINGS,
    checkpoints: freshness.CheckpointSource | None = None,
) -> Flask:
    """Build the app; collaborators are built from `settings` unless given (tests). Without
    `checkpoints`, reads with `X-Min-Position` follow the worker through PostgreSQL's
    notifications when the read model is built here, else read `users`' checkpoint once."""
    app = Flask("usersvc")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        WORKER_NAME=settings.worker_name,
        HEALTH_STALL_SECONDS=settings.health_stall_seconds,
        MIN_POSITION_WAIT=settings.min_position_wait,
    )
    # Keys in the order the contract gives them (`id`, `username`, `createdAt`, `fullName`).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if event_store is None:
        event_store = EventStore(settings.esdb_connection_string, settings.esdb_timeout)
    if users is None:
        pool: ConnectionPool[Any] = ConnectionPool(
            settings.require_database_url(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            open=False,
            name="usersvc-read-model",
        )
        # Do not block start-up on PostgreSQL: requests answer 503 until it is reachable.
        pool.open(wait=False)
        users = UserRepository(pool, settings.database_schema)
        app.extensions["usersvc.pool"] = pool
        if checkpoints is None:
            checkpoints = freshness.CheckpointListener(
                settings.require_database_url(), settings.database_schema, settings.worker_name
            )
    if checkpoints is None:
        checkpoints = freshness.StoredCheckpoint(users.checkpoint, settings.worker_name)
    if verifier is _FROM_SETTINGS:
        verifier = auth.verifier_from_settings(settings)
    app.extensions[context.EVENT_STORE] = event_store
    app.extensions[context.USERS] = users
    app.extensions[freshness.EXTENSION] = checkpoints
    app.extensions[auth.EXTENSION] = verifier
    store: StorePort = event_store
    request_id.install(app)
    if settings.metrics_enabled:
        measured = metrics.ServiceMetrics()
        metrics.install(app, measured)
        store = metrics.MeteredStore(event_store, measured)
    app.extensions[context.COMMANDS] = UserCommands(store)
    for blueprint in (routes.blueprint, changes.blueprint, history.blueprint, probes.blueprint):
        app.register_blueprint(blueprint)
    docs.install(app, metrics=settings.metrics_enabled)
    register_error_handlers(app)
    return app


def close_app(app: Flask) -> None:
    """Release the pool and the EventStoreDB client (gunicorn worker exit, tests)."""
    pool = app.extensions.get("usersvc.pool")
    if pool is not None:
        pool.close()
    store = app.extensions.get(context.EVENT_STORE)
    if isinstance(store, EventStore):
        store.close()
    checkpoints = app.extensions.get(freshness.EXTENSION)
    if checkpoints is not None:
        checkpoints.close()

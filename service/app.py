"""The Flask application factory: the service's composition root."""

from __future__ import annotations

import time
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
from service.concurrency import LimitedStore
from service.errors import register_error_handlers
from service.event_store import EventStore
from service.query_deadline import QueryDeadline
from service.users import UserRepository, pool_settings
from usersvc.settings import Settings

MAX_BODY_BYTES = 16 * 1024
# Seconds past the server's statement_timeout after which the client cuts a query off.
QUERY_DEADLINE_SLACK = 0.5
QUERY_DEADLINE = "usersvc.query_deadline"
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
        HEALTH_STARTUP_GRACE=settings.health_startup_grace,
        STARTED_AT=time.monotonic(),
        MIN_POSITION_WAIT=settings.min_position_wait,
    )
    # Keys in the order the contract gives them (`id`, `username`, `createdAt`, `fullName`).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if event_store is None:
        event_store = EventStore(settings.esdb_connection_string, settings.esdb_timeout)
    if users is None:
        users, listener = _read_model(app, settings)
        if checkpoints is None:
            checkpoints = listener
    if checkpoints is None:
        checkpoints = freshness.StoredCheckpoint(users.checkpoint, settings.worker_name)
    if verifier is _FROM_SETTINGS:
        verifier = auth.verifier_from_settings(settings)
    app.extensions[context.EVENT_STORE] = event_store
    app.extensions[context.USERS] = users
    app.extensions[freshness.EXTENSION] = checkpoints
    app.extensions[auth.EXTENSION] = verifier
    # A hung EventStoreDB holds at most `esdb_call_slots` threads of this process.
    store: StorePort = LimitedStore(event_store, settings.esdb_call_slots, settings.esdb_queue_wait)
    request_id.install(app)
    if settings.metrics_enabled:
        measured = metrics.ServiceMetrics()
        metrics.install(app, measured)
        store = metrics.MeteredStore(store, measured)
    app.extensions[context.COMMANDS] = UserCommands(
        store, retry_window=settings.create_retry_window
    )
    for blueprint in (routes.blueprint, changes.blueprint, history.blueprint, probes.blueprint):
        app.register_blueprint(blueprint)
    docs.install(app, metrics=settings.metrics_enabled)
    register_error_handlers(app)
    return app


def _read_model(
    app: Flask, settings: Settings
) -> tuple[UserRepository, freshness.CheckpointListener]:
    """The read model's repository over a pool of bounded connections, and the listener that
    follows the worker's checkpoint; the pool and the query deadline are kept in `app` for
    `close_app`."""
    conninfo = settings.require_database_url()
    pool: ConnectionPool[Any] = ConnectionPool(
        conninfo,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        kwargs=pool_settings(
            conninfo,
            connect_timeout=settings.db_connect_timeout,
            statement_timeout=settings.db_statement_timeout,
        ),
        open=False,
        name="usersvc-read-model",
    )
    # Do not block start-up on PostgreSQL: requests answer 503 until it is reachable.
    pool.open(wait=False)
    # The server cancels a slow query itself; one that does not answer at all is cut off a
    # little later by the client.
    deadline = QueryDeadline(settings.db_statement_timeout + QUERY_DEADLINE_SLACK)
    app.extensions["usersvc.pool"] = pool
    app.extensions[QUERY_DEADLINE] = deadline
    users = UserRepository(
        pool, settings.database_schema, pool_timeout=settings.db_pool_timeout, deadline=deadline
    )
    listener = freshness.CheckpointListener(
        conninfo,
        settings.database_schema,
        settings.worker_name,
        connect_timeout=settings.db_connect_timeout,
        deadline=deadline,
    )
    return users, listener


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
    deadline = app.extensions.get(QUERY_DEADLINE)
    if deadline is not None:
        deadline.close()

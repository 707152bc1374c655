"""The Flask application factory: the service's composition root."""

from __future__ import annotations

from typing import Any

from flask import Flask
from psycopg_pool import ConnectionPool

from service import request_id
from service.errors import register_error_handlers
from service.event_store import EventStore
from service.routes import EventStorePort, UsersPort, blueprint
from service.users import UserRepository
from usersvc.settings import Settings

MAX_BODY_BYTES = 16 * 1024


def create_app(
    settings: Settings,
    *,
    event_store: EventStorePort | None = None,
    users: UsersPort | None = None,
) -> Flask:
    """Build the app; collaborators are built from `settings` unless given (tests)."""
    app = Flask("usersvc")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        WORKER_NAME=settings.worker_name,
        HEALTH_STALL_SECONDS=settings.health_stall_seconds,
        JSON_SORT_KEYS=False,
    )
    if event_store is None:
        store = EventStore(settings.esdb_connection_string, settings.esdb_timeout)
        event_store = store
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
    app.extensions["usersvc.event_store"] = event_store
    app.extensions["usersvc.users"] = users
    app.register_blueprint(blueprint)
    request_id.install(app)
    register_error_handlers(app)
    return app


def close_app(app: Flask) -> None:
    """Release the pool and the EventStoreDB client (gunicorn worker exit, tests)."""
    pool = app.extensions.get("usersvc.pool")
    if pool is not None:
        pool.close()
    store = app.extensions.get("usersvc.event_store")
    if isinstance(store, EventStore):
        store.close()

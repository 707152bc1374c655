"""`usersvc serve`: gunicorn in production, Flask's debug server in development.

`serve` blocks until SIGTERM or SIGINT and returns 0 after a clean stop, in both modes.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from service.app import close_app, create_app
from usersvc.logs import FORMAT
from usersvc.settings import Settings
from usersvc.tokens import load_private_key

log = logging.getLogger(__name__)

# gthread workers: each request mostly waits on gRPC or PostgreSQL, so threads overlap well.


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Called in each worker after the fork: every worker has its own pool and gRPC channel.
        return create_app(self.settings)


class _Logger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own lines in the format of every other line, naming the process."""

    error_fmt = FORMAT
    datefmt = None


def _close_worker_app(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        close_app(app)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """By default one worker per core (at least 2), gthread, access log off (it costs ~10% on
    GET)."""
    cores = os.cpu_count() or 1
    return {
        "bind": f"{settings.http_host}:{settings.http_port}",
        "workers": settings.http_workers or max(2, cores),
        "worker_class": "gthread",
        "threads": settings.http_threads,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logger_class": _Logger,
        "worker_exit": _close_worker_app,
    }


def serve(settings: Settings, *, debug: bool = False) -> int:
    if settings.auth_signing_key_file is not None:
        # A bad key file stops start-up here, in one line, not in every gunicorn worker.
        load_private_key(settings.auth_signing_key_file)
    if debug:
        return _serve_debug(settings)
    try:
        _Gunicorn(settings, gunicorn_options(settings)).run()
    except SystemExit as exit_:
        # gunicorn's arbiter leaves through sys.exit(); 0 after SIGTERM/SIGINT.
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


class _Stop(Exception):
    """Raised in the main thread by SIGTERM to leave the debug server's loop."""


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_debug(settings: Settings) -> int:
    app = create_app(settings)
    log.info("debug server on http://%s:%d", settings.http_host, settings.http_port)
    try:
        with _sigterm_stops():
            app.run(settings.http_host, settings.http_port, debug=False, use_reloader=False)
    except (_Stop, KeyboardInterrupt):
        log.info("debug server stopped")
    finally:
        close_app(app)
    return 0

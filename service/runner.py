"""`usersvc serve`: gunicorn in production, Flask's debug server in development."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from service.app import close_app, create_app
from usersvc.settings import Settings

log = logging.getLogger(__name__)


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


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    return {
        "bind": f"{settings.http_host}:{settings.http_port}",
        "workers": max(2, cores),
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "worker_exit": lambda server, worker: close_app(worker.wsgi),
    }


def serve(settings: Settings, *, debug: bool = False) -> int:
    if debug:
        app = create_app(settings)
        log.info("debug server on http://%s:%d", settings.http_host, settings.http_port)
        try:
            app.run(settings.http_host, settings.http_port, debug=False, use_reloader=False)
        finally:
            close_app(app)
        return 0
    _Gunicorn(settings, gunicorn_options(settings)).run()
    return 0

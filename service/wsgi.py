"""WSGI entry for any server: `gunicorn 'service.wsgi:create_app()'`. Nothing runs at import."""

from __future__ import annotations

import atexit

from flask import Flask

from service.app import close_app
from service.app import create_app as _create_app
from usersvc.logs import configure_logging
from usersvc.settings import load_settings


def create_app() -> Flask:
    """The app from `load_settings()`; its pool and gRPC channel close when the process exits."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = _create_app(settings)
    atexit.register(close_app, app)
    return app

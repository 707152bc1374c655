"""WSGI entry for any server: `gunicorn 'service.wsgi:create_app()'`. Nothing runs at import."""

from __future__ import annotations

from flask import Flask

from service.app import create_app as _create_app
from usersvc.logs import configure_logging
from usersvc.settings import load_settings


def create_app() -> Flask:
    settings = load_settings()
    configure_logging(settings.log_level)
    return _create_app(settings)

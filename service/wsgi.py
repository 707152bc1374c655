"""Entries for running gunicorn yourself. Nothing runs at import.

- `gunicorn -k service.runner.FrontWorker 'service.wsgi:create_front()'`: what `usersvc serve`
  runs (requests read whole on an event loop before a thread sees them; see `service.front`);
- `create_app()`: the bare WSGI app, for any WSGI server (one that reads each request in the
  thread that serves it can be starved by slow clients).
"""

from __future__ import annotations

import atexit

from flask import Flask

from service.app import close_app
from service.app import create_app as _create_app
from service.front import Front
from service.runner import front
from usersvc.logs import configure_logging
from usersvc.settings import load_settings


def create_app() -> Flask:
    """The app from `load_settings()`; its pool and gRPC channel close when the process exits."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = _create_app(settings)
    atexit.register(close_app, app)
    return app


def create_front() -> Front:
    """`create_app()` behind the HTTP front, for `service.runner.FrontWorker`."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = _create_app(settings)
    served = front(app, settings)
    atexit.register(close_app, app)
    atexit.register(served.close)
    return served

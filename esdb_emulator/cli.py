"""`python -m esdb_emulator` / `usersvc emulator`: run the emulator until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from esdb_emulator.errors import StoreError
from esdb_emulator.server import EmbeddedServer
from esdb_emulator.store import Store
from usersvc.records import StoredEvent

log = logging.getLogger("esdb_emulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usersvc emulator",
        description="An EventStoreDB emulator for development and tests (gRPC, insecure).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=2113, help="port (0 picks a free one)")
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/esdb"),
        help="where the log is kept (default var/esdb)",
    )
    storage.add_argument("--mem", action="store_true", help="keep everything in memory")
    parser.add_argument(
        "--advertised-host",
        default=None,
        help="host name gossip tells clients to use (default: --host)",
    )
    parser.add_argument(
        "--import",
        dest="import_file",
        type=Path,
        default=None,
        help="load an exported bundle before serving",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from usersvc.logs import configure_logging

    configure_logging(args.log_level)
    server = EmbeddedServer(
        None if args.mem else args.data_dir,
        host=args.host,
        port=args.port,
        advertised_host=args.advertised_host,
    )
    if args.import_file is not None:
        # Import before serving, so that no client can write in between.
        store = Store(server.data_dir)
        try:
            imported = import_bundle(store, args.import_file)
        except (StoreError, ValueError, OSError, ImportError) as exc:
            log.error("import of %s failed, nothing was imported: %s", args.import_file, exc)
            store.close()
            return 1
        log.info("imported %d events from %s", imported, args.import_file)
        if server.data_dir is None:
            server.store = store  # in memory: the server serves this very store
        else:
            store.close()
    try:
        server.start()
    except OSError as exc:
        log.error("%s", exc)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("serving %s (Ctrl-C stops)", server.connection_string)
    stop.wait()
    log.info("stopping")
    server.stop(grace=2.0)
    return 0


def import_bundle(store: Store, path: Path) -> int:
    # Imported lazily: only this code path needs the bundle reader.
    bundle = importlib.import_module("repro.bundle")
    events: Iterable[StoredEvent] = bundle.read_bundle(path)
    return store.import_events(events)

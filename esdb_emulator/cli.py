"""`python -m esdb_emulator`: run the emulator until SIGTERM or SIGINT;
`python -m esdb_emulator scavenge --data-dir DIR`: scavenge a data directory no emulator holds;
`python -m esdb_emulator salvage --from DIR --to NEW_DIR`: copy what is whole of a damaged data
directory into a new one.

`build_parser`, `server_from` and `serve` are public so that a program embedding the emulator
can add options of its own (usersvc's `usersvc emulator --import` loads a bundle this way), and
`run_offline` its offline commands."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from esdb_emulator.model import Store
from esdb_emulator.model.salvage import SalvageReport
from esdb_emulator.model.salvage import salvage as salvaged
from esdb_emulator.model.wal import FILE_NAME
from esdb_emulator.server import EmbeddedServer

log = logging.getLogger("esdb_emulator")

PROG = "python -m esdb_emulator"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SIGNAL_POLL = 0.5  # seconds


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="An EventStoreDB emulator for development and tests (gRPC, insecure).",
        epilog=f"`{prog} scavenge --data-dir DIR` scavenges a data directory that no emulator "
        f"holds; `{prog} salvage --from DIR --to NEW_DIR` copies what is whole of a damaged one "
        "into a new one.",
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


def scavenge_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog} scavenge",
        description="Remove truncated, deleted and tombstoned events from an emulator's data "
        "directory, keeping the positions, revisions and ids of the rest. Refused while an "
        "emulator runs on the directory.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the data directory")
    parser.add_argument("--log-level", default="INFO")
    return parser


def scavenge(data_dir: Path) -> int:
    """Scavenge `data_dir`; print what was removed. 1 when no emulator data is there, or the
    directory is in use, or the new log cannot be written (the old one is then untouched)."""
    if not (data_dir / FILE_NAME).is_file():
        log.error("%s holds no emulator data (no %s)", data_dir, FILE_NAME)
        return 1
    try:
        store = Store(data_dir)
    except OSError as exc:
        log.error("%s", exc)
        return 1
    try:
        report = store.scavenge()
    except OSError as exc:
        log.error("scavenge of %s failed, nothing changed: %s", data_dir, exc)
        return 1
    finally:
        store.close()
    print(
        f"scavenged {data_dir}: removed {report.removed} of {report.scanned} events, "
        f"{report.space_saved} bytes saved"
    )
    return 0


def salvage_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog} salvage",
        description="Copy every whole frame of a damaged data directory into a new one, keeping "
        "positions, revisions, ids and times, and say what was kept and what was left out. The "
        "damaged directory is never changed. New events in the new one get positions above "
        "every position the damaged one may have handed out.",
    )
    parser.add_argument(
        "--from", dest="source", type=Path, required=True, help="the damaged data directory"
    )
    parser.add_argument(
        "--to", dest="target", type=Path, required=True, help="a new (or empty) data directory"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def salvage(source: Path, target: Path) -> int:
    """Salvage `source` into `target`; print the report. 1 when nothing could be salvaged
    (`source` holds no log or is in use, `target` is not new, or writing it failed)."""
    try:
        report = salvaged(source, target)
    except OSError as exc:
        log.error("salvage of %s into %s failed: %s", source, target, exc)
        return 1
    print(describe_salvage(source, target, report))
    return 0


def describe_salvage(source: Path, target: Path, report: SalvageReport) -> str:
    left_out = sum(part.count for part in report.left_out)
    streams = f" of {counted(len(report.left_out), 'stream')}" if report.left_out else ""
    lines = [
        f"salvaged {source} into {target}: kept {counted(report.frames, 'frame')} "
        f"({counted(report.events, 'event')}), skipped "
        f"{counted(len(report.skipped), 'damaged byte range')}, left out "
        f"{counted(left_out, 'event')}{streams}; new events go above commit position "
        f"{report.next_after}"
    ]
    for skipped in report.skipped:
        what = "a torn tail" if skipped.torn else "damaged"
        lines.append(
            f"  skipped bytes {skipped.offset} to {skipped.end} "
            f"({counted(skipped.end - skipped.offset, 'byte')}, {what}), after commit position "
            f"{skipped.after_position}"
        )
    for part in report.left_out:
        lines.append(
            f"  left out {part.stream!r} revisions {part.first} to {part.last} "
            f"({counted(part.count, 'event')}): a later revision was in the damage, and the "
            "stream keeps the revisions after it"
        )
    if report.reservation_damaged:
        lines.append(
            "  the reserved position could not be read; new events go above the last whole frame"
        )
    return "\n".join(lines)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def run_offline(
    arguments: Sequence[str], prog: str, configure: Callable[[str], None]
) -> int | None:
    """Run the offline command `arguments` name (`scavenge`, `salvage`) and return its exit
    code; None when they name none."""
    if arguments[:1] == ["scavenge"]:
        options = scavenge_parser(prog).parse_args(arguments[1:])
        configure(options.log_level)
        return scavenge(options.data_dir)
    if arguments[:1] == ["salvage"]:
        options = salvage_parser(prog).parse_args(arguments[1:])
        configure(options.log_level)
        return salvage(options.source, options.target)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    offline = run_offline(arguments, PROG, configure_logging)
    if offline is not None:
        return offline
    args = build_parser().parse_args(arguments)
    configure_logging(args.log_level)
    return serve(server_from(args))

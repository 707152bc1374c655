"""`usersvc emulator`: the EventStoreDB emulator, plus `--import FILE` to load a usersvc bundle
before serving; `usersvc emulator scavenge ...` and `usersvc emulator salvage ...` are the
emulator's offline commands.

The emulator knows nothing of usersvc; this composer reads the bundle (`repro.bundle`) and turns
each `StoredEvent` into the emulator's `ImportedEvent`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from esdb_emulator import ImportedEvent, Store
from esdb_emulator import cli as emulator_cli
from esdb_emulator.model import StoreError
from usersvc.logs import configure_logging
from usersvc.records import StoredEvent

log = logging.getLogger("usersvc")

JSON = "application/json"
PROG = "usersvc emulator"


def imported(event: StoredEvent) -> ImportedEvent:
    return ImportedEvent(
        position=event.commit_position,
        stream=event.stream,
        revision=event.revision,
        event_id=event.event_id,
        type=event.type,
        data=event.data,
        metadata=event.metadata,
        is_json=event.content_type == JSON,
        recorded_at=event.recorded_at,
    )


def import_events(store: Store, events: Iterable[StoredEvent]) -> int:
    """Load recorded events into the emulator's store as they were recorded (all or nothing)."""
    return store.import_events(imported(event) for event in events)


def import_bundle(store: Store, path: Path) -> int:
    """Load a bundle (verified whole before anything is loaded); return how many events."""
    from repro.bundle import read_bundle

    return import_events(store, read_bundle(path))


def run(argv: Sequence[str]) -> int:
    offline = emulator_cli.run_offline(argv, PROG, configure_logging)
    if offline is not None:
        return offline
    parser = emulator_cli.build_parser(prog=PROG)
    parser.add_argument(
        "--import",
        dest="import_file",
        type=Path,
        default=None,
        help="load an exported bundle before serving",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    server = emulator_cli.server_from(args)
    if args.import_file is not None:
        # Before serving, so that no client can write in between.
        try:
            store = server.open_store()
        except OSError as exc:  # e.g. the data directory is in use, or its log is damaged
            log.error("%s", exc)
            return 1
        try:
            count = import_bundle(store, args.import_file)
        except (StoreError, ValueError, OSError) as exc:
            log.error("import of %s failed, nothing was imported: %s", args.import_file, exc)
            server.stop()
            return 1
        log.info("imported %d events from %s", count, args.import_file)
    return emulator_cli.serve(server)

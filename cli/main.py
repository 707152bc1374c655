"""`usersvc <command>`: dispatch to the composition root of each process.

Each sub-command imports its package only when it runs, so `usersvc migrate` never loads Flask
and `usersvc emulator` never loads psycopg.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from usersvc.logs import configure_logging
from usersvc.settings import SettingsError, load_settings

log = logging.getLogger("usersvc")


def _migrate(args: argparse.Namespace) -> int:
    from worker.migrator import migrate

    settings = load_settings()
    applied = migrate(settings.require_database_url(), settings.database_schema)
    log.info("schema %s is up to date (%d applied now)", settings.database_schema, len(applied))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usersvc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(
        run=_migrate
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return int(args.run(args))
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

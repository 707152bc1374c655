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


def _serve(args: argparse.Namespace) -> int:
    from service.runner import serve

    return serve(load_settings(), debug=args.debug)


def _worker(args: argparse.Namespace) -> int:
    from worker.runner import run

    return run(load_settings())


def _migrate(args: argparse.Namespace) -> int:
    from worker.migrator import migrate

    settings = load_settings()
    applied = migrate(settings.require_database_url(), settings.database_schema)
    log.info("schema %s is up to date (%d applied now)", settings.database_schema, len(applied))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from usersvc_cli.dev import DevOptions, run_dev

    return run_dev(
        DevOptions(
            data_dir=args.data_dir,
            http_port=args.http_port,
            esdb_port=args.esdb_port,
            debug=args.debug,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    from usersvc_cli.repro_commands import register as register_repro
    from usersvc_cli.token_command import register as register_token

    parser = argparse.ArgumentParser(prog="usersvc", description="Event-sourced user service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the HTTP API (gunicorn)")
    serve.add_argument("--debug", action="store_true", help="Flask's debug server instead")
    serve.set_defaults(run=_serve)

    commands.add_parser("worker", help="project events into PostgreSQL").set_defaults(run=_worker)
    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(
        run=_migrate
    )
    commands.add_parser(
        "emulator",
        help="run the embedded EventStoreDB (see `usersvc emulator --help`)",
        add_help=False,
    )

    dev = commands.add_parser(
        "dev", help="run everything locally with no Docker: emulator, PostgreSQL, service, worker"
    )
    dev.add_argument("--data-dir", default="var/dev", help="where data persists (default var/dev)")
    dev.add_argument("--http-port", type=int, default=None, help="default: settings' http_port")
    dev.add_argument("--esdb-port", type=int, default=2113, help="emulator port (default 2113)")
    dev.add_argument("--debug", action="store_true", help="Flask's debug server, not gunicorn")
    dev.set_defaults(run=_dev)

    register_repro(commands)
    register_token(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        # The emulator owns its options; hand them over untouched.
        from esdb_emulator.cli import main as emulator_main

        return emulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
    except SettingsError:
        configure_logging()  # the command itself reports the bad setting
    try:
        return int(args.run(args))
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

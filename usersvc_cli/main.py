"""`usersvc <command>`: dispatch to the composition root of each process.

Each sub-command imports its package only when it runs, so `usersvc migrate` never loads Flask
and `usersvc emulator` never loads psycopg. The settings are loaded once, here, and passed to the
command. A command that cannot do its job ends with one line on stderr and exit status 2 (refused:
bad input, nothing changed), 1 (failed partway) or 128 + N (stopped by signal N: 130 for SIGINT,
143 for SIGTERM); see `usersvc_cli.errors`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from usersvc.logs import configure_logging, name_process
from usersvc.settings import Settings, SettingsError, load_settings
from usersvc_cli.errors import (
    FAILED,
    REFUSED,
    SIGNALLED,
    CommandError,
    Failed,
    Refused,
    one_line,
)

log = logging.getLogger("usersvc")

# The name each command's log lines carry (`usersvc serve` is the service).
PROCESS_NAMES = {"serve": "service"}


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.runner import serve
    from usersvc_cli.database import check_postgres_url

    # The service answers 503 while PostgreSQL is down; a URL that can never work is refused.
    if settings.database_url is not None:
        check_postgres_url(settings.database_url.get_secret_value(), "DATABASE_URL")
    return serve(settings, debug=args.debug)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from usersvc_cli.database import check_postgres
    from worker.runner import run

    # The worker rides out a PostgreSQL outage, retrying; a URL that never led anywhere is a
    # configuration error and is refused at once.
    check_postgres(settings.require_database_url(), "DATABASE_URL")
    return run(settings)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from usersvc_cli.database import postgres
    from worker.migrator import MigrationError, apply_migrations, load_migrations

    url = settings.require_database_url()
    try:
        migrations = load_migrations()
        with postgres(url, "DATABASE_URL", autocommit=True) as conn:
            applied = apply_migrations(conn, settings.database_schema, migrations)
    except MigrationError as exc:
        raise Refused(f"migrate refused: {exc}") from None
    except psycopg.Error as exc:
        raise Failed(f"migrate failed: {one_line(exc)}") from None
    log.info("schema %s is up to date (%d applied now)", settings.database_schema, len(applied))
    return 0


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from usersvc_cli.dev import DevOptions, run_dev

    return run_dev(
        settings,
        DevOptions(
            data_dir=args.data_dir,
            http_port=args.http_port,
            esdb_port=args.esdb_port,
            debug=args.debug,
        ),
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("usersvc")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from usersvc_cli.parked_command import register as register_parked
    from usersvc_cli.repro_commands import register as register_repro
    from usersvc_cli.token_command import register as register_token

    parser = argparse.ArgumentParser(prog="usersvc", description="Event-sourced user service.")
    parser.add_argument("--version", action="version", version=f"usersvc {_version()}")
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
    register_parked(commands)
    register_token(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        # The emulator's own options plus --import; handed over untouched.
        from usersvc_cli.emulator_command import run as run_emulator

        name_process("emulator")
        return run_emulator(argv[1:])
    args = build_parser().parse_args(argv)
    name_process(PROCESS_NAMES.get(args.command, args.command))
    try:
        settings = load_settings()
    except SettingsError as exc:
        configure_logging()
        log.error("%s", exc)
        return REFUSED
    configure_logging(settings.log_level, settings.log_format)
    return run_command(args, settings)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the parsed command; turn every way it can fail into one logged line and a status."""
    try:
        return int(args.run(args, settings))
    except CommandError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except SettingsError as exc:
        log.error("%s", exc)
        return REFUSED
    except KeyboardInterrupt as exc:
        # SIGINT, or SIGTERM under `repro.interrupts` (its `Interrupted` names the signal).
        signum = int(getattr(exc, "signum", signal.SIGINT))
        log.error("usersvc %s interrupted by %s", args.command, signal.Signals(signum).name)
        return SIGNALLED + signum
    except Exception as exc:
        # Not foreseen: still one line; the traceback for whoever runs with LOG_LEVEL=DEBUG.
        log.error("usersvc %s failed: %s: %s", args.command, type(exc).__name__, one_line(exc))
        log.debug("traceback of the failure", exc_info=True)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())

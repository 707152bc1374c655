"""`usersvc replay`, `usersvc export` and `usersvc snapshot`: reproduce a production bug locally;
`usersvc events check`: can this version read the stored events. `usersvc bisect`, `diff` and
`bundle cat` are in `usersvc_cli.bug_commands`. Each of them stops on SIGTERM as on Ctrl-C
(`stoppable`): cleaned up, one line, exit 128 + the signal's number."""

from __future__ import annotations

import argparse
import functools
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from usersvc.events import STREAM_PREFIX
from usersvc.settings import Settings
from usersvc_cli.errors import Failed, Refused, Stopped, one_line

Command = Callable[[argparse.Namespace, Settings], int]

CUTOFF_HELP = (
    "A replay is always a prefix of $all. --until-position and --until-event-id include that "
    "event; --until TIME includes every event before the first one recorded later than TIME "
    "(events stamped exactly TIME are in; an event stamped earlier that comes after the first "
    "later one is out). A cutoff before the first event or after the last is refused. "
    "--from-position P starts strictly after P."
)
REPLAY_HELP = (
    "The replay is one transaction of the target: it ends with a summary and a replay_manifest"
    " row (exit 0), or leaves nothing behind, not even the schema. Exit 2: refused, nothing"
    " written (a bad argument or cutoff, an unreachable source or target, a target that holds"
    " data, a damaged or malformed bundle or snapshot). Exit 1: stopped partway; when an event"
    " cannot be applied the target holds the read model before it and a manifest row saying"
    " where and why; when the source fails midway nothing was written. Exit 130 (SIGINT) or"
    " 143 (SIGTERM): stopped partway on request, nothing written. After 1, 130 or 143 run the"
    " same command again (with --force when the target was kept). "
)


def stoppable(run: Command) -> Command:
    """`run` with SIGTERM stopping it as Ctrl-C does (`repro.interrupts`)."""

    @functools.wraps(run)
    def run_stoppable(args: argparse.Namespace, settings: Settings) -> int:
        from repro.interrupts import stopped_by_signals

        with stopped_by_signals():
            return run(args, settings)

    return run_stoppable


def _time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone; add Z or +00:00")
    return moment


def _event_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an event id (a UUID)") from None


def _position(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a commit position")
    return number


def add_range(parser: argparse.ArgumentParser, from_help: str = "start strictly after P") -> None:
    parser.add_argument("--from-position", type=_position, metavar="P", help=from_help)
    until = parser.add_mutually_exclusive_group()
    until.add_argument("--until", type=_time, metavar="TIME", help="ISO-8601 time with zone")
    until.add_argument("--until-position", type=_position, metavar="P")
    until.add_argument("--until-event-id", type=_event_id, metavar="ID")
    parser.add_argument(
        "--stream-prefix",
        default=STREAM_PREFIX,
        help=f"streams to take (default {STREAM_PREFIX!r})",
    )


def register(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay history into a fresh database up to a moment",
        description="Replay $all into a fresh read model. " + REPLAY_HELP + CUTOFF_HELP,
    )
    replay.add_argument("--target-database-url", required=True)
    replay.add_argument("--schema", help="target schema (default: DATABASE_SCHEMA)")
    add_range(replay)
    source = replay.add_mutually_exclusive_group()
    source.add_argument("--source-esdb", metavar="URL", help="default: ESDB_CONNECTION_STRING")
    source.add_argument("--from-bundle", type=Path, metavar="FILE")
    replay.add_argument(
        "--from-snapshot",
        type=Path,
        metavar="FILE",
        help="restore this snapshot, then replay what came after it",
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="empty the target's read model and replay manifest first, in the same transaction",
    )
    replay.add_argument(
        "--park",
        action="store_true",
        help="park the stream of an event the projection cannot apply and go on, as the live "
        "worker does (up to WORKER_MAX_PARKED_STREAMS streams), instead of halting there",
    )
    replay.add_argument(
        "--projection",
        metavar="MODULE:CLASS",
        help="replay with this projection (a subclass of worker.projection.Projection, e.g. a"
        " fix under test; MODULE may be a path/to/file.py), then compare with usersvc diff",
    )
    replay.set_defaults(run=stoppable(_replay))

    export = commands.add_parser(
        "export",
        help="write a range of events to a bundle file",
        description="Export events into a bundle. " + CUTOFF_HELP,
    )
    export.add_argument("--output", type=Path, required=True)
    export.add_argument("--source-esdb", metavar="URL", help="default: ESDB_CONNECTION_STRING")
    add_range(export)
    export.add_argument(
        "--redact",
        default="",
        metavar="FIELDS",
        help="comma-separated JSON data fields to pseudonymize, e.g. fullName,username"
        " (username also renames its streams)",
    )
    export.add_argument(
        "--redact-key-file",
        type=Path,
        metavar="FILE",
        help="the secret key of the pseudonyms (HMAC-SHA-256): the same key gives the same"
        " tokens in every export; default: a key generated for this export and forgotten",
    )
    export.set_defaults(run=stoppable(_export))

    snapshot = commands.add_parser("snapshot", help="save the read model and its checkpoint")
    snapshot.add_argument("--output", type=Path, required=True)
    snapshot.add_argument("--database-url", help="default: DATABASE_URL")
    snapshot.add_argument("--schema", help="default: DATABASE_SCHEMA")
    snapshot.set_defaults(run=stoppable(_snapshot))

    events = commands.add_parser("events", help="check the stored events")
    actions = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="decode every stored event of the users with this version's code",
        description="Decode every event of the user streams, in $all order, with the code of "
        "this version (its decoder and upcasters), as a deploy of it would read them. Exit 0 "
        "with a summary when all can be read; exit 1 naming the first that cannot (position, "
        "stream, type, revision, reason); exit 2 when the source cannot be read.",
    )
    check_source = check.add_mutually_exclusive_group()
    check_source.add_argument(
        "--source-esdb", metavar="URL", help="default: ESDB_CONNECTION_STRING"
    )
    check_source.add_argument("--from-bundle", type=Path, metavar="FILE")
    check.set_defaults(run=stoppable(_events_check), stream_prefix=STREAM_PREFIX)

    from usersvc_cli.bug_commands import register as register_bug_commands

    register_bug_commands(commands)


def projection_class(spec: str | None, command: str) -> Any:
    """The projection class `spec` names (the worker's when None), or `Refused`."""
    from repro.loading import LoadError, load_projection
    from worker.projection import Projection

    if spec is None:
        return Projection
    try:
        return load_projection(spec)
    except LoadError as exc:
        raise Refused(f"{command} refused: --projection: {exc}") from None


def cutoff_of(args: argparse.Namespace) -> Any:
    from repro.cutoff import ToEnd, UntilEventId, UntilPosition, UntilTime

    if args.until is not None:
        return UntilTime(args.until)
    if args.until_position is not None:
        return UntilPosition(args.until_position)
    if args.until_event_id is not None:
        return UntilEventId(args.until_event_id)
    return ToEnd()


def source_of(args: argparse.Namespace, settings: Settings) -> Any:
    from repro.history import BundleSource, EsdbSource

    if getattr(args, "from_bundle", None) is not None:
        return BundleSource(args.from_bundle, args.stream_prefix)
    return EsdbSource(args.source_esdb or settings.esdb_connection_string, args.stream_prefix)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from repro.cutoff import ReplayError
    from repro.history import SourceUnavailable
    from repro.interrupts import Interrupted
    from repro.replay import ReplayFailed, ReplayHalted, ReplayRequest, replay
    from usersvc_cli.database import check_postgres_url

    check_postgres_url(args.target_database_url, "--target-database-url")
    projection = projection_class(args.projection, "replay")
    try:
        source = source_of(args, settings)
        try:
            summary = replay(
                source,
                ReplayRequest(
                    target_url=args.target_database_url,
                    schema=args.schema or settings.database_schema,
                    checkpoint_name=settings.worker_name,
                    cutoff=cutoff_of(args),
                    from_position=args.from_position,
                    snapshot=args.from_snapshot,
                    force=args.force,
                    projection=projection,
                    park_up_to=settings.worker_max_parked_streams if args.park else None,
                ),
            )
        finally:
            source.close()
    except Interrupted as exc:
        raise Stopped(f"replay stopped partway: {exc}", exc.signum) from None
    except ReplayHalted as exc:
        raise Failed(f"replay stopped: {one_line(exc)}") from None
    except ReplayFailed as exc:
        raise Failed(f"replay stopped partway: {one_line(exc)}") from None
    except (ReplayError, SourceUnavailable) as exc:
        raise Refused(f"replay refused: {one_line(exc)}") from None
    except psycopg.Error as exc:
        raise Failed(f"replay failed in the target database: {one_line(exc)}") from None
    sys.stdout.write("replay done\n" + "".join(f"  {line}\n" for line in summary.lines()))
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from repro.cutoff import ReplayError
    from repro.export import check_output, export, read_key
    from repro.history import SourceLost, SourceUnavailable

    fields = [f.strip() for f in args.redact.split(",") if f.strip()]
    if args.redact_key_file is not None and not fields:
        raise Refused("export refused: --redact-key-file needs --redact FIELDS")
    try:
        key = None if args.redact_key_file is None else read_key(args.redact_key_file)
        check_output(args.output)
        source = source_of(args, settings)
        try:
            result = export(
                source,
                args.output,
                cutoff=cutoff_of(args),
                from_position=args.from_position,
                redact_fields=fields,
                redact_key=key,
            )
        finally:
            source.close()
    except SourceLost as exc:
        raise Failed(f"export stopped partway: {one_line(exc)}; no file was left") from None
    except (ReplayError, SourceUnavailable) as exc:
        raise Refused(f"export refused: {one_line(exc)}") from None
    sys.stdout.write(
        f"exported {result['count']} events (positions {result['firstPosition']} .. "
        f"{result['lastPosition']}) to {args.output}\n"
    )
    return 0


def _events_check(args: argparse.Namespace, settings: Settings) -> int:
    from repro.check import check_events
    from repro.history import SourceUnavailable

    try:
        source = source_of(args, settings)
        try:
            summary = check_events(source)
        finally:
            source.close()
    except SourceUnavailable as exc:
        raise Refused(f"events check refused: {one_line(exc)}") from None
    if summary.unreadable is not None:
        raise Failed(
            f"events check failed: {summary.unreadable.describe()} "
            f"({summary.count + summary.skipped} events before it were read)"
        )
    sys.stdout.write("events check passed\n" + "".join(f"  {line}\n" for line in summary.lines()))
    return 0


def _snapshot(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from repro.snapshot import take_snapshot
    from usersvc_cli.database import check_postgres

    url = args.database_url or settings.require_database_url()
    what = "--database-url" if args.database_url else "DATABASE_URL"
    schema = args.schema or settings.database_schema
    if not args.output.parent.is_dir():
        raise Refused(f"snapshot refused: the folder {args.output.parent} does not exist")
    check_postgres(url, what)
    try:
        header = take_snapshot(url, schema, settings.worker_name, args.output)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
        raise Refused(
            f"snapshot refused: schema {schema} holds no read model ({one_line(exc)})"
        ) from None
    except psycopg.Error as exc:
        raise Failed(f"snapshot failed: {one_line(exc)}") from None
    sys.stdout.write(
        f"snapshot of {header['rows']} rows at checkpoint "
        f"{header['checkpoint']} written to {args.output}\n"
    )
    return 0

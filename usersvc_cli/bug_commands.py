"""`usersvc bisect`: which event made the read model wrong; `usersvc diff`: two read models row
by row; `usersvc bundle cat`: a bundle as JSON lines."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import orjson

from usersvc.settings import Settings
from usersvc_cli.errors import Failed, Refused, one_line
from usersvc_cli.repro_commands import (
    CUTOFF_HELP,
    add_range,
    cutoff_of,
    projection_class,
    source_of,
    stoppable,
)

BISECT_HELP = (
    "Find the first event after which a check of the read model fails. The history is replayed"
    " with the worker's pipeline and projection (or --projection) into a throwaway schema of"
    " --database-url that exists only inside one transaction, always rolled back. The check"
    " runs after every batch, then a binary search inside the first batch after which it fails"
    " finds the event: about one replay of the range in all. It assumes that once the check"
    " fails it keeps failing, and checks the rest of the range to say whether that is true"
    " (unless --stop-early). Exit 0: the event was found and is printed; 1: no event is to"
    " blame (the check never fails, or already fails before the range, or the projection halts"
    " first); 2: refused. "
)
DIFF_HELP = (
    "Compare two read models row by row, by username: rows only in A, only in B, and differing,"
    " each with the event that produced it on each side, and both checkpoints. Exit 0 when they"
    " are equal, 1 when they differ, 2 when a side cannot be read."
)
# Lines written to stdout at a time by `bundle cat`.
_CAT_CHUNK = 1000


def register(commands: Any) -> None:
    bisect = commands.add_parser(
        "bisect",
        help="find the first event after which a check of the read model fails",
        description=BISECT_HELP
        + CUTOFF_HELP.removesuffix(" --from-position P starts strictly after P."),
    )
    source = bisect.add_mutually_exclusive_group()
    source.add_argument("--source-esdb", metavar="URL", help="default: ESDB_CONNECTION_STRING")
    source.add_argument("--from-bundle", type=Path, metavar="FILE")
    check = bisect.add_mutually_exclusive_group(required=True)
    check.add_argument(
        "--check-sql",
        metavar="QUERY",
        help='SQL that returns rows when the state is wrong, e.g. SELECT username FROM "user"'
        " WHERE ...; unqualified names are the throwaway read model's tables",
    )
    check.add_argument(
        "--check",
        metavar="MODULE:FUNCTION",
        help="a Python function taking the psycopg connection, returning True when the state"
        " is wrong (MODULE may be a path/to/file.py)",
    )
    bisect.add_argument(
        "--database-url",
        help="PostgreSQL for the throwaway schema (nothing stays there); default: DATABASE_URL",
    )
    add_range(
        bisect,
        "search only the events after P; the history up to P is still applied, unchecked, so"
        " every state checked is one that existed",
    )
    bisect.add_argument(
        "--projection",
        metavar="MODULE:CLASS",
        help="a subclass of worker.projection.Projection to bisect with instead of the worker's",
    )
    bisect.add_argument(
        "--batch-size", type=_positive, default=10_000, help="events per batch (default 10000)"
    )
    bisect.add_argument(
        "--stop-early",
        action="store_true",
        help="stop at the event found instead of checking the rest of the range for the rule",
    )
    bisect.set_defaults(run=stoppable(_bisect))

    diff = commands.add_parser(
        "diff", help="compare two read models row by row", description=DIFF_HELP
    )
    diff.add_argument("url_a", metavar="URL_A", help="PostgreSQL URL of read model A")
    diff.add_argument("url_b", metavar="URL_B", help="PostgreSQL URL of read model B")
    diff.add_argument("--schema-a", help="default: DATABASE_SCHEMA")
    diff.add_argument("--schema-b", help="default: DATABASE_SCHEMA")
    diff.add_argument(
        "--limit", type=_positive, metavar="N", help="show at most N differences (all counted)"
    )
    diff.add_argument("--json", action="store_true", help="JSON lines instead of text")
    diff.set_defaults(run=stoppable(_diff))

    bundle = commands.add_parser("bundle", help="read bundle files")
    actions = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    cat = actions.add_parser(
        "cat",
        help="print a bundle's manifest and events as JSON lines",
        description="Print the manifest, every event and the checked trailer as JSON lines"
        " (for jq or grep). Event data is the JSON value when the event is JSON (`data`),"
        " base64 otherwise (`dataBase64`); metadata likewise.",
    )
    cat.add_argument("file", type=Path, metavar="FILE")
    cat.set_defaults(run=stoppable(_bundle_cat))


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return number


def _bisect(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from repro.bisect import BisectError, BisectRequest, Found, bisect
    from repro.bisect_report import report
    from repro.checks import Check, CheckError, SqlCheck, load_check
    from repro.cutoff import ReplayError
    from repro.history import SourceUnavailable
    from repro.loading import LoadError, qualified_name
    from usersvc_cli.database import check_postgres

    check: Check
    try:
        check = SqlCheck(args.check_sql) if args.check_sql is not None else load_check(args.check)
    except (LoadError, CheckError) as exc:
        raise Refused(f"bisect refused: --check: {exc}") from None
    projection = projection_class(args.projection, "bisect")
    url = args.database_url or settings.require_database_url()
    check_postgres(url, "--database-url" if args.database_url else "DATABASE_URL")
    try:
        source = source_of(args, settings)
        try:
            sys.stdout.write(
                f"bisect of {source.label}\n  check:      {check.describe()}\n"
                f"  projection: {args.projection or qualified_name(projection)}\n"
            )
            sys.stdout.flush()
            outcome = bisect(
                source,
                BisectRequest(
                    database_url=url,
                    check=check,
                    projection=projection,
                    cutoff=cutoff_of(args),
                    from_position=args.from_position,
                    batch_size=args.batch_size,
                    check_rest=not args.stop_early,
                ),
            )
        finally:
            source.close()
    except (ReplayError, SourceUnavailable) as exc:
        raise Refused(f"bisect refused: {one_line(exc)}") from None
    except CheckError as exc:
        raise Refused(f"bisect refused: {one_line(exc)}") from None
    except BisectError as exc:
        raise Failed(f"bisect failed: {one_line(exc)}") from None
    except psycopg.Error as exc:
        raise Failed(f"bisect failed in the database: {one_line(exc)}") from None
    lines = report(outcome)
    if isinstance(outcome, Found):
        lines.append(
            "the state after it, to look at: usersvc replay "
            + _replay_arguments(args, outcome.culprit.event.commit_position)
        )
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0 if isinstance(outcome, Found) else 1


def _replay_arguments(args: argparse.Namespace, position: int) -> str:
    words = (
        ["--from-bundle", str(args.from_bundle)]
        if args.from_bundle is not None
        else (["--source-esdb", args.source_esdb] if args.source_esdb else [])
    )
    if args.projection:
        words += ["--projection", args.projection]
    words += ["--until-position", str(position), "--target-database-url", "URL"]
    return shlex.join(words)


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    from repro.diff import Difference, DiffError, Side, diff
    from repro.diff_report import difference_json, difference_line, summary_json, summary_lines
    from usersvc_cli.database import check_postgres_url

    check_postgres_url(args.url_a, "URL_A")
    check_postgres_url(args.url_b, "URL_B")
    a = Side(args.url_a, args.schema_a or settings.database_schema)
    b = Side(args.url_b, args.schema_b or settings.database_schema)
    shown = 0
    out = sys.stdout

    def show(difference: Difference) -> None:
        nonlocal shown
        shown += 1
        if args.limit is not None and shown > args.limit:
            return
        if args.json:
            out.write(orjson.dumps(difference_json(difference)).decode() + "\n")
        else:
            out.write(difference_line(difference) + "\n")

    try:
        summary = diff(a, b, show)
    except DiffError as exc:
        raise Refused(f"diff refused: {one_line(exc)}") from None
    if args.json:
        out.write(orjson.dumps(summary_json(a, b, summary)).decode() + "\n")
    else:
        if args.limit is not None and shown > args.limit:
            out.write(f"... {shown - args.limit} more differences not shown (--limit)\n")
        out.write("".join(line + "\n" for line in summary_lines(a, b, summary)))
    return 1 if summary.differ else 0


def _bundle_cat(args: argparse.Namespace, settings: Settings) -> int:
    from repro.bundle_cat import cat_lines
    from repro.bundle_format import BundleError

    out = sys.stdout.buffer
    written = 0
    pending: list[bytes] = []
    try:
        for line in cat_lines(args.file):
            pending.append(line)
            if len(pending) >= _CAT_CHUNK:
                out.write(b"\n".join(pending) + b"\n")
                written += len(pending)
                pending.clear()
        if pending:
            out.write(b"\n".join(pending) + b"\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): that is the end, not a failure. Keep the interpreter
        # from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BundleError as exc:
        if pending:
            out.write(b"\n".join(pending) + b"\n")
            out.flush()
        if written or pending:
            raise Failed(f"bundle cat failed: {one_line(exc)}") from None
        raise Refused(f"bundle cat refused: {one_line(exc)}") from None
    return 0

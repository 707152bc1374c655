"""`usersvc parked list | show STREAM | retry STREAM... | --all | skip STREAM --reason TEXT`:
see and operate the streams the worker parked at an event it cannot apply (worker/parking.py).

Each prints JSON, one object a line (for `jq`). `retry` and `skip` exit 0 when the streams are
no longer parked, 1 when one is still parked at an event refused again (the line says why), 2 when
a stream is not parked. They work on the read model of `DATABASE_URL`/`DATABASE_SCHEMA` and the
worker's projection (`WORKER_NAME`), while the worker runs or not.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

from usersvc.settings import Settings
from usersvc_cli.errors import FAILED, Refused

if TYPE_CHECKING:
    # Imported when a command runs: `usersvc --help` loads no psycopg.
    from worker.parked import Outcome, ParkedStream, ParkedStreams


def register(commands: Any) -> None:
    parked = commands.add_parser(
        "parked",
        help="list, show, retry or skip streams parked at an event the worker cannot apply",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parked.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the parked streams, oldest first").set_defaults(run=_list)
    show = actions.add_parser("show", help="a parked stream and its parked events")
    show.add_argument("stream")
    show.set_defaults(run=_show)
    retry = actions.add_parser("retry", help="re-apply parked events with the current code")
    retry.add_argument("streams", nargs="*", metavar="STREAM")
    retry.add_argument("--all", action="store_true", help="every parked stream")
    retry.set_defaults(run=_retry)
    skip = actions.add_parser(
        "skip", help="set a stream's first parked event aside for good, then retry the rest"
    )
    skip.add_argument("stream")
    skip.add_argument("--reason", required=True, help="why (recorded with the event)")
    skip.add_argument("--by", default=None, help="who (default: the login name)")
    skip.set_defaults(run=_skip)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _parked(settings) as parked:
        for stream in parked.streams():
            _print(_stream_json(stream))
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with _parked(settings) as parked:
        found = parked.streams(args.stream)
        if not found:
            raise Refused(f"stream {args.stream!r} is not parked")
        _print(_stream_json(found[0]))
        for event in parked.events(args.stream):
            _print(
                {
                    "commitPosition": event.commit_position,
                    "revision": event.revision,
                    "eventId": str(event.event_id),
                    "type": event.type,
                    "recordedAt": event.recorded_at.isoformat(),
                    "data": event.data.decode(errors="replace"),
                    "metadata": event.metadata.decode(errors="replace"),
                }
            )
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.streams) == args.all:
        raise Refused("parked retry needs one or more STREAMs, or --all")
    with _parked(settings) as parked:
        streams = [s.stream for s in parked.streams()] if args.all else args.streams
        outcomes = [_operate(parked.retry, stream) for stream in streams]
    return FAILED if any(o.still_parked for o in outcomes) else 0


def _skip(args: argparse.Namespace, settings: Settings) -> int:
    by = args.by or _login()
    with _parked(settings) as parked:
        outcome = _operate(lambda s: parked.skip(s, by=by, why=args.reason), args.stream)
    return FAILED if outcome.still_parked else 0


def _operate(operation: Callable[[str], Outcome], stream: str) -> Outcome:
    from worker.parked import NotParked

    try:
        outcome = operation(stream)
    except NotParked:
        raise Refused(f"stream {stream!r} is not parked") from None
    refused = outcome.still_parked
    _print(
        {
            "stream": stream,
            "applied": outcome.applied,
            "skipped": outcome.skipped,
            "parked": refused is not None,
            "parkedAt": None if refused is None else refused.commit_position,
            "reason": None if refused is None else refused.reason,
        }
    )
    return outcome


@contextmanager
def _parked(settings: Settings) -> Iterator[ParkedStreams]:
    """The worker's projection's parked streams, on one connection."""
    from usersvc_cli.database import postgres
    from worker.parked import ParkedStreams
    from worker.projection import Projection

    with postgres(settings.require_database_url(), "DATABASE_URL", autocommit=True) as conn:
        yield ParkedStreams(conn, Projection(settings.database_schema, settings.worker_name))


def _stream_json(stream: ParkedStream) -> dict[str, Any]:
    return {
        "stream": stream.stream,
        "parkedAt": stream.first_position,
        "reason": stream.reason,
        "attempts": stream.attempts,
        "events": stream.events,
        "since": stream.parked_at.isoformat(),
        "updated": stream.updated_at.isoformat(),
    }


def _print(value: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

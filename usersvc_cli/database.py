"""PostgreSQL as a command meets it: a URL that is malformed or leads nowhere is refused (exit 2)
before the command starts its work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from usersvc_cli.errors import Refused, one_line

# Seconds to wait for PostgreSQL when connecting.
CONNECT_TIMEOUT = 10


@contextmanager
def postgres(url: str, what: str, **options: Any) -> Iterator[psycopg.Connection[Any]]:
    """A connection to `url`, or `Refused` naming `what` (e.g. 'DATABASE_URL') when the URL is
    malformed or leads nowhere. Errors after the connection is made pass through unchanged."""
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, **options)
    except psycopg.ProgrammingError as exc:
        raise Refused(f"{what} is not a valid PostgreSQL URL: {one_line(exc)}") from None
    except psycopg.Error as exc:
        raise Refused(f"cannot connect to PostgreSQL at {what}: {one_line(exc)}") from None
    with conn:
        yield conn


def check_postgres(url: str, what: str) -> None:
    """Refuse (see `postgres`) unless `url` leads to a PostgreSQL that accepts a connection."""
    with postgres(url, what):
        pass


def check_postgres_url(url: str, what: str) -> None:
    """Refuse a malformed PostgreSQL URL without connecting."""
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise Refused(f"{what} is not a valid PostgreSQL URL: {one_line(exc)}") from None

"""The read model, read-only: users and the worker's checkpoint, through a connection pool.

Every query is bounded: a connection is waited for at most `pool_timeout` seconds, and a query
runs under a `QueryDeadline` (the server's `statement_timeout` too, set by `pool_settings`).
PostgreSQL's own messages go to the log, never into an answer.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from service.errors import DatabaseUnavailable
from service.query_deadline import QueryDeadline
from usersvc.readmodel import ReadModel

UNAVAILABLE_MESSAGE = "PostgreSQL is unavailable; retry shortly"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    created_at: datetime
    full_name: str
    # The stream revision of the last event the worker applied: the ETag of `GET`.
    revision: int


@dataclass(frozen=True)
class Checkpoint:
    commit_position: int
    updated_at: datetime


def pool_settings(
    conninfo: str, *, connect_timeout: int, statement_timeout: float
) -> dict[str, Any]:
    """The connection arguments of the service's pool: autocommit (it only reads, so nothing is
    left to commit on a server that may hang), a connect timeout, and `statement_timeout` added
    to whatever `options` the URL holds."""
    options = psycopg.conninfo.conninfo_to_dict(conninfo).get("options") or ""
    timeout = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
    return {
        "autocommit": True,
        "connect_timeout": connect_timeout,
        "options": f"{options} {timeout}".strip(),
    }


class UserRepository:
    def __init__(
        self,
        pool: ConnectionPool[Any],
        schema: str,
        *,
        pool_timeout: float = 2.0,
        deadline: QueryDeadline | None = None,
    ) -> None:
        self.pool = pool
        self.pool_timeout = pool_timeout
        self.deadline = deadline
        model = ReadModel(schema)
        self._get = model.select_user
        self._checkpoint = model.select_checkpoint
        self._parked = model.count_parked

    def get(self, username: str) -> User | None:
        row = self._fetch_one(self._get, username)
        return None if row is None else User(*row)

    def checkpoint(self, name: str) -> Checkpoint | None:
        row = self._fetch_one(self._checkpoint, name)
        return None if row is None else Checkpoint(int(row[0]), row[1])

    def parked_streams(self, name: str) -> int:
        """How many streams the projection `name` parked at an event it cannot apply."""
        row = self._fetch_one(self._parked, name)
        return 0 if row is None else int(row[0])

    def _fetch_one(self, query: sql.Composed, value: str) -> tuple[Any, ...] | None:
        try:
            with self.pool.connection(timeout=self.pool_timeout) as conn:
                with self.deadline.guard(conn) if self.deadline else nullcontext():
                    row: tuple[Any, ...] | None = conn.execute(query, (value,)).fetchone()
                return row
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable(UNAVAILABLE_MESSAGE) from exc

"""The read model, read-only: users and the worker's checkpoint, through a connection pool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from service.errors import DatabaseUnavailable
from usersvc.readmodel import ReadModel

POOL_TIMEOUT = 2.0


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


class UserRepository:
    def __init__(self, pool: ConnectionPool[Any], schema: str) -> None:
        self.pool = pool
        model = ReadModel(schema)
        self._get = model.select_user
        self._checkpoint = model.select_checkpoint

    def get(self, username: str) -> User | None:
        row = self._fetch_one(self._get, username)
        return None if row is None else User(*row)

    def checkpoint(self, name: str) -> Checkpoint | None:
        row = self._fetch_one(self._checkpoint, name)
        return None if row is None else Checkpoint(int(row[0]), row[1])

    def _fetch_one(self, query: sql.Composed, value: str) -> tuple[Any, ...] | None:
        try:
            with self.pool.connection(timeout=POOL_TIMEOUT) as conn:
                row: tuple[Any, ...] | None = conn.execute(query, (value,)).fetchone()
                return row
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable(f"PostgreSQL is unreachable: {exc}") from exc

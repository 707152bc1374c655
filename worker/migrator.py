"""Forward-only SQL migrations: `migrations/NNNN_<what>.sql`, applied in order.

Each file runs in its own transaction with `search_path` set to the target schema, and is
recorded in `<schema>.schema_migrations` with a checksum. An advisory lock keyed on the schema
makes concurrent runners (several replicas starting at once) wait for each other instead of
racing. A recorded file whose content has since changed stops the run: migrations are history.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary constant mixed with the schema name so that our lock never collides with others'.
_LOCK_NAMESPACE = 0x75737276  # "usrv"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_migrations_dir() -> Path:
    """`MIGRATIONS_DIR` if set, else the SQL shipped inside the package.

    The top-level `migrations/` folder is installed as the package `usersvc.migrations`, in a wheel
    and in an editable install alike, so this holds wherever the command runs.
    """
    configured = os.environ.get("MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    try:
        packaged = resources.files("usersvc.migrations")
    except ModuleNotFoundError:
        raise MigrationError(
            "usersvc.migrations is not installed: install the project (pip install -e .)"
        ) from None
    if not isinstance(packaged, Path):
        raise MigrationError(f"the migrations are not files on disk ({packaged}); install unzipped")
    return packaged


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or default_migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: not named NNNN_<what>.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    if not found:
        raise MigrationError(f"no migrations found in {directory}")
    return found


def migrate(conninfo: str, schema: str, directory: Path | None = None) -> list[Migration]:
    """Apply the pending migrations to `schema`, each in its own transaction; return those
    applied now."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return apply_migrations(conn, schema, load_migrations(directory))


def apply_migrations(
    conn: psycopg.Connection[Any], schema: str, migrations: list[Migration]
) -> list[Migration]:
    """Apply the pending `migrations` to `schema` on `conn` under the schema's advisory lock.

    On an autocommit connection each migration commits on its own; inside an open transaction
    (a replay building its target) they become part of it, so a failed caller leaves nothing.
    """
    applied_now: list[Migration] = []
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, schema))
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
        rows = conn.execute(
            sql.SQL("SELECT version, checksum FROM {}.schema_migrations").format(
                sql.Identifier(schema)
            )
        ).fetchall()
        done: dict[int, str] = dict(rows)
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
                conn.execute(migration.sql.encode())
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)"
                    ).format(sql.Identifier(schema)),
                    (migration.version, migration.name, migration.checksum),
                )
            log.info(
                "applied migration %04d_%s to schema %s", migration.version, migration.name, schema
            )
            applied_now.append(migration)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_NAMESPACE, schema))
    return applied_now

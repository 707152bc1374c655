"""Read-model snapshots: the rows plus the checkpoint position they reflect.

A snapshot is zstd-compressed JSON lines: a header (format, the schema version, i.e. the newest
migration applied, the checkpoint name and position, the row count), one line per row, and a
trailer with the SHA-256 of the row lines. `replay --from-snapshot` restores it into a fresh
schema of the same version and replays only what came after its checkpoint.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import zstandard
from psycopg import sql

from worker.migrator import load_migrations

FORMAT = "usersvc-snapshot"
COLUMNS = ("username", "createdAt", "fullName", "eventId", "commitPosition")


class SnapshotError(ValueError):
    pass


def schema_version() -> int:
    return max(m.version for m in load_migrations())


def take_snapshot(conninfo: str, schema: str, checkpoint_name: str, output: Path) -> dict[str, Any]:
    """Write the read model of `schema` to `output`; return the header."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    with psycopg.connect(conninfo) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            version = conn.execute(
                sql.SQL("SELECT max(version) FROM {}").format(
                    sql.Identifier(schema, "schema_migrations")
                )
            ).fetchone()
            row = conn.execute(
                sql.SQL("SELECT commit_position FROM {} WHERE name = %s").format(
                    sql.Identifier(schema, "checkpoint")
                ),
                (checkpoint_name,),
            ).fetchone()
            count_row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "user"))
            ).fetchone()
            header = {
                "format": FORMAT,
                "schemaVersion": version[0] if version else None,
                "checkpointName": checkpoint_name,
                "checkpoint": row[0] if row else None,
                "rows": count_row[0] if count_row else 0,
                "createdAt": datetime.now(UTC).isoformat(),
            }
            digest = hashlib.sha256()
            tmp = output.with_name(output.name + ".partial")
            with open(tmp, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
                out.write(orjson.dumps(header) + b"\n")
                query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
                    columns, sql.Identifier(schema, "user")
                )
                with conn.cursor(name="snapshot") as cursor:
                    cursor.itersize = 10_000
                    for username, created, full_name, event_id, position in cursor.execute(query):
                        line = (
                            orjson.dumps(
                                [username, created.isoformat(), full_name, str(event_id), position]
                            )
                            + b"\n"
                        )
                        digest.update(line)
                        out.write(line)
                out.write(orjson.dumps({"sha256": digest.hexdigest()}) + b"\n")
            tmp.replace(output)
    return header


def load_snapshot(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    """Read and check a snapshot; raise `SnapshotError` for anything wrong."""
    try:
        with open(path, "rb") as raw:
            content = zstandard.ZstdDecompressor().stream_reader(raw).read()
    except (OSError, zstandard.ZstdError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from None
    lines = content.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"":
        raise SnapshotError(f"snapshot {path} is truncated")
    try:
        header = orjson.loads(lines[0])
        trailer = orjson.loads(lines[-2])
    except orjson.JSONDecodeError:
        raise SnapshotError(f"snapshot {path} is corrupt") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a usersvc snapshot")
    body = lines[1:-2]
    digest = hashlib.sha256()
    for line in body:
        digest.update(line + b"\n")
    if (
        not isinstance(trailer, dict)
        or trailer.get("sha256") != digest.hexdigest()
        or len(body) != header.get("rows")
    ):
        raise SnapshotError(f"snapshot {path} is corrupt or truncated")
    if header.get("schemaVersion") != schema_version():
        raise SnapshotError(
            f"snapshot {path} was taken at schema version {header.get('schemaVersion')}, "
            f"this code is at {schema_version()}; take a new snapshot with this version"
        )
    return header, [orjson.loads(line) for line in body]


def restore_rows(conn: psycopg.Connection[Any], schema: str, rows: list[list[Any]]) -> None:
    """Insert snapshot rows (in the caller's transaction), in their original order."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(schema, "user"), columns)
    with conn.cursor() as cursor, cursor.copy(copy) as writer:
        for row in rows:
            writer.write_row(row)

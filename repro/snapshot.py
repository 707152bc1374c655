"""Read-model snapshots: the rows plus the checkpoint position they reflect.

A snapshot is zstd-compressed JSON lines: a header (format, the schema version, i.e. the newest
migration applied, the checkpoint name and position, the row count), one line per row, and a
trailer with the SHA-256 of the row lines. `replay --from-snapshot` checks it, then streams it
into a fresh schema of the same version and replays only what came after its checkpoint.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import zstandard
from psycopg import sql

from usersvc.readmodel import ReadModel
from worker.migrator import load_migrations

FORMAT = "usersvc-snapshot"


class SnapshotError(ValueError):
    pass


def schema_version() -> int:
    return max(m.version for m in load_migrations())


def take_snapshot(conninfo: str, schema: str, checkpoint_name: str, output: Path) -> dict[str, Any]:
    """Write the read model of `schema` to `output`; return the header."""
    model = ReadModel(schema)
    with psycopg.connect(conninfo) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            version = conn.execute(
                sql.SQL("SELECT max(version) FROM {}").format(model.migrations)
            ).fetchone()
            row = conn.execute(model.select_checkpoint, (checkpoint_name,)).fetchone()
            count_row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(model.users)
            ).fetchone()
            header = {
                "format": FORMAT,
                "schemaVersion": version[0] if version else None,
                "checkpointName": checkpoint_name,
                "checkpoint": row[0] if row else None,
                "rows": count_row[0] if count_row else 0,
                "createdAt": datetime.now(UTC).isoformat(),
            }
            tmp = output.with_name(output.name + ".partial")
            try:
                _write_rows(conn, schema, header, tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(output)
    return header


def _write_rows(
    conn: psycopg.Connection[Any], schema: str, header: dict[str, Any], path: Path
) -> None:
    model = ReadModel(schema)
    digest = hashlib.sha256()
    with open(path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
        out.write(orjson.dumps(header) + b"\n")
        query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(model.user_columns, model.users)
        with conn.cursor(name="snapshot") as cursor:
            cursor.itersize = 10_000
            for username, created, full_name, event_id, position, revision in cursor.execute(query):
                row = [username, created.isoformat(), full_name, str(event_id), position, revision]
                line = orjson.dumps(row) + b"\n"
                digest.update(line)
                out.write(line)
        out.write(orjson.dumps({"sha256": digest.hexdigest()}) + b"\n")


def _lines(path: Path) -> Iterator[bytes]:
    """The lines of a snapshot, each with its newline, decompressed as they are read."""
    try:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            yield from io.BufferedReader(reader, buffer_size=1 << 20)
    except (OSError, zstandard.ZstdError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from None


def _scan(path: Path) -> Iterator[dict[str, Any] | bytes]:
    """The header, then each row line, then a check of the trailer (raises if anything is off)."""
    lines = _lines(path)
    header = _json(path, next(lines, b""))
    if header.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a usersvc snapshot")
    yield header
    digest = hashlib.sha256()
    rows = int(header.get("rows") or 0)
    for _ in range(rows):
        line = next(lines, b"")
        if not line.endswith(b"\n"):
            raise SnapshotError(f"snapshot {path} is truncated")
        digest.update(line)
        yield line
    trailer = next(lines, b"")
    if not trailer.endswith(b"\n"):
        raise SnapshotError(f"snapshot {path} is truncated")
    if _json(path, trailer).get("sha256") != digest.hexdigest() or next(lines, None) is not None:
        raise SnapshotError(f"snapshot {path} is corrupt: its rows do not match its trailer")


def _json(path: Path, line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise SnapshotError(f"{path} is not a usersvc snapshot, or is corrupt")
    return value


def check_snapshot(path: Path) -> dict[str, Any]:
    """Read the whole snapshot and check it; return its header. Raise `SnapshotError` for a
    damaged file or one taken at another schema version."""
    header: dict[str, Any] = {}
    for item in _scan(path):
        if isinstance(item, dict):
            header = item
    if header.get("schemaVersion") != schema_version():
        raise SnapshotError(
            f"snapshot {path} was taken at schema version {header.get('schemaVersion')}, "
            f"this code is at {schema_version()}; take a new snapshot with this version"
        )
    return header


def restore_rows(conn: psycopg.Connection[Any], schema: str, path: Path) -> int:
    """Copy the rows of a checked snapshot into `schema` (in the caller's transaction), in their
    original order; return how many."""
    model = ReadModel(schema)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(model.users, model.user_columns)
    count = 0
    with conn.cursor() as cursor, cursor.copy(copy) as writer:
        for item in _scan(path):
            if isinstance(item, bytes):
                writer.write_row(orjson.loads(item))
                count += 1
    return count

"""Read-model snapshots: the rows plus the checkpoint position they reflect.

A snapshot is zstd-compressed JSON lines: a header (format, the schema version, i.e. the newest
migration applied, the checkpoint name and position, the row count), one line per row, and a
trailer with the SHA-256 of the row lines. `replay --from-snapshot` checks it, then streams it
into a fresh schema of the same version and replays only what came after its checkpoint.

A damaged or hostile file is refused with `SnapshotError`, and reading one holds no more memory
than reading a valid one: a line may have at most `MAX_LINE` bytes (a row has well under 2 KiB),
the header's counts must be counts, and each row must have the read model's shape before it is
copied; a row PostgreSQL still refuses (a bad time, a duplicate username) is refused the same way.
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
# The longest line read: far above a header, a trailer or a row (two names of at most 100
# characters, a time, an id and two numbers), far below what would strain memory.
MAX_LINE = 64 << 10
# The JSON types of a row's values, in `USER_COLUMNS` order.
_ROW_TYPES = (str, str, str, str, int, int)


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
    """The lines of a snapshot, each with its newline, decompressed as they are read; a line
    longer than `MAX_LINE` is refused before more of it is read."""
    try:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            lines = io.BufferedReader(reader, buffer_size=1 << 20)
            while line := lines.readline(MAX_LINE + 1):
                if len(line) > MAX_LINE:
                    raise SnapshotError(
                        f"snapshot {path} is corrupt: a line is longer than {MAX_LINE:,} bytes"
                    )
                yield line
    except (OSError, zstandard.ZstdError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from None


def _scan(path: Path) -> Iterator[dict[str, Any] | bytes]:
    """The header, then each row line, then a check of the trailer (raises if anything is off)."""
    lines = _lines(path)
    header = _json(path, next(lines, b""))
    if header.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a usersvc snapshot")
    yield header
    rows = _count(path, header, "rows")
    _count(path, header, "checkpoint", optional=True)
    digest = hashlib.sha256()
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


def _count(path: Path, header: dict[str, Any], key: str, *, optional: bool = False) -> int:
    """The header's `key`, a whole number >= 0 (or None when `optional`), else refused."""
    value = header.get(key)
    if value is None and optional:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SnapshotError(f"snapshot {path} is corrupt: its header's {key} is {value!r}")
    return value


def _row(path: Path, line: bytes, number: int) -> list[Any]:
    """The values of a row line, refused unless they have the read model's shape."""
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        row = None
    if (
        not isinstance(row, list)
        or len(row) != len(_ROW_TYPES)
        or any(
            not isinstance(value, kind) or isinstance(value, bool)
            for value, kind in zip(row, _ROW_TYPES, strict=True)
        )
    ):
        raise SnapshotError(f"snapshot {path} is corrupt: row {number} is not a read-model row")
    return row


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
    original order; return how many. A row that is not a read-model row, or that PostgreSQL
    refuses (a bad time, a name too long, a duplicate username), raises `SnapshotError`; the
    caller's transaction is then to be rolled back."""
    model = ReadModel(schema)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(model.users, model.user_columns)
    count = 0
    try:
        with conn.cursor() as cursor, cursor.copy(copy) as writer:
            for item in _scan(path):
                if isinstance(item, bytes):
                    writer.write_row(_row(path, item, count + 1))
                    count += 1
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        raise SnapshotError(
            f"snapshot {path} holds a row the read model refuses: {exc.diag.message_primary}"
        ) from None
    return count

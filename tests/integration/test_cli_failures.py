"""Every `usersvc` command that cannot do its job says why in one line on stderr, with no
traceback, and exits 2 when it refused (bad input, nothing changed) or 1 when it failed partway.

Each case runs the real command line in a child process.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from repro.bundle import write_bundle
from tests.fixtures.cli import closed_port, run_usersvc
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.records import StoredEvent

MALFORMED = "not-a-url"
# Placeholders filled in when a test runs: {tmp} its folder, {port} a port nobody listens on.
UNREACHABLE = "postgresql://usersvc@127.0.0.1:{port}/usersvc"
NO_ESDB = "esdb://127.0.0.1:{port}?tls=false"


def unreachable() -> str:
    return UNREACHABLE.format(port=closed_port())


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle of two user-created events."""
    path = tmp_path / "two.bundle"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        StoredEvent(
            100 * (i + 1),
            stream_name(f"fail-{i}"),
            0,
            uuid.uuid4(),
            "user-created",
            encode_user_created(UserCreated(f"fail-{i}", f"Person {i}", at)),
            b"{}",
            "application/json",
            at,
        )
        for i in range(2)
    ]
    write_bundle(path, events, {})
    return path


def execute(pg_url: str, statement: sql.Composable) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(statement)


# (command line, environment, what the one line says)
REFUSED = {
    "migrate-malformed-url": (
        ["migrate"],
        {"DATABASE_URL": MALFORMED},
        "DATABASE_URL is not a valid PostgreSQL URL: missing",
    ),
    "migrate-unreachable": (
        ["migrate"],
        {"DATABASE_URL": UNREACHABLE},
        "cannot connect to PostgreSQL at DATABASE_URL: connection failed",
    ),
    "worker-malformed-url": (
        ["worker"],
        {"DATABASE_URL": MALFORMED},
        "DATABASE_URL is not a valid PostgreSQL URL: missing",
    ),
    "worker-unreachable": (
        ["worker"],
        {"DATABASE_URL": UNREACHABLE},
        "cannot connect to PostgreSQL at DATABASE_URL: connection failed",
    ),
    "serve-malformed-url": (
        ["serve"],
        {"DATABASE_URL": MALFORMED},
        "DATABASE_URL is not a valid PostgreSQL URL: missing",
    ),
    "dev-malformed-url": (
        ["dev", "--data-dir", "{tmp}/dev", "--esdb-port", "{port}"],
        {"DATABASE_URL": MALFORMED, "HTTP_PORT": "{http_port}"},
        "DATABASE_URL is not a valid PostgreSQL URL: missing",
    ),
    "dev-unreachable": (
        ["dev", "--data-dir", "{tmp}/dev", "--esdb-port", "{port}"],
        {"DATABASE_URL": UNREACHABLE, "HTTP_PORT": "{http_port}"},
        "cannot connect to PostgreSQL at DATABASE_URL: connection failed",
    ),
    "export-into-a-missing-folder": (
        # The source cannot be read either: the folder is refused before it is tried.
        ["export", "--output", "{tmp}/missing/out.bundle", "--source-esdb", NO_ESDB],
        {},
        "export refused: cannot write {tmp}/missing/out.bundle: the folder {tmp}/missing "
        "does not exist",
    ),
    "snapshot-malformed-url": (
        ["snapshot", "--output", "{tmp}/s.snapshot", "--database-url", MALFORMED],
        {},
        "--database-url is not a valid PostgreSQL URL: missing",
    ),
    "snapshot-unreachable": (
        ["snapshot", "--output", "{tmp}/s.snapshot"],
        {"DATABASE_URL": UNREACHABLE},
        "cannot connect to PostgreSQL at DATABASE_URL: connection failed",
    ),
    "snapshot-into-a-missing-folder": (
        ["snapshot", "--output", "{tmp}/missing/s.snapshot", "--database-url", UNREACHABLE],
        {},
        "snapshot refused: the folder {tmp}/missing does not exist",
    ),
    "replay-malformed-target": (
        ["replay", "--target-database-url", MALFORMED, "--source-esdb", NO_ESDB],
        {},
        "--target-database-url is not a valid PostgreSQL URL: missing",
    ),
    "replay-unreachable-target": (
        ["replay", "--target-database-url", UNREACHABLE, "--from-bundle", "{tmp}/two.bundle"],
        {},
        "replay refused: cannot connect to the target database: connection failed",
    ),
    "events-check-unreachable-source": (
        ["events", "check", "--source-esdb", NO_ESDB],
        {},
        "events check refused: cannot read EventStoreDB at esdb://127.0.0.1:",
    ),
    "bad-setting": (
        ["migrate"],
        {"DATABASE_SCHEMA": "Not-An-Identifier"},
        "invalid configuration: database_schema",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_command_exits_2_with_one_line_and_no_traceback(
    case: str, tmp_path: Path, bundle: Path
) -> None:
    argv, env, message = REFUSED[case]
    fill = {"tmp": tmp_path, "port": closed_port(), "http_port": closed_port()}
    result = run_usersvc(
        *(arg.format(**fill) for arg in argv),
        env={key: value.format(**fill) for key, value in env.items()},
        config=tmp_path / "absent.toml",
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message.format(tmp=tmp_path) in result.stderr


def test_python_m_worker_is_usersvc_worker(tmp_path: Path) -> None:
    result = run_usersvc(
        env={"DATABASE_URL": UNREACHABLE},
        config=tmp_path / "absent.toml",
        module="worker",
    )
    assert result.returncode == 2, result.stderr
    assert "ERROR worker usersvc: cannot connect to PostgreSQL at DATABASE_URL" in result.stderr


def test_a_refused_dev_creates_no_data_directory(tmp_path: Path) -> None:
    run_usersvc(
        "dev",
        "--data-dir",
        str(tmp_path / "dev"),
        env={"DATABASE_URL": UNREACHABLE},
        config=tmp_path / "absent.toml",
    )
    assert not (tmp_path / "dev").exists()


def test_a_refused_export_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "missing" / "out.bundle"
    run_usersvc("export", "--output", str(output), env={}, config=tmp_path / "absent.toml")
    assert list(tmp_path.iterdir()) == []


def test_migrate_failing_partway_exits_1_with_the_database_error(
    pg_url: str, unique: str, tmp_path: Path
) -> None:
    schema = f"mf_{unique}"
    execute(pg_url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    execute(pg_url, sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, "user")))
    result = run_usersvc(
        "migrate",
        env={"DATABASE_URL": pg_url, "DATABASE_SCHEMA": schema},
        config=tmp_path / "absent.toml",
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert 'migrate failed: relation "user" already exists' in result.stderr


def test_replay_failing_in_the_target_database_exits_1_with_its_error(
    pg_url: str, schema: str, bundle: Path, tmp_path: Path
) -> None:
    execute(
        pg_url,
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$"
        ).format(sql.Identifier(schema, "refuse")),
    )
    execute(
        pg_url,
        sql.SQL(
            "CREATE TRIGGER refuse BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(schema, "user"), sql.Identifier(schema, "refuse")),
    )
    result = run_usersvc(
        "replay",
        "--target-database-url",
        pg_url,
        "--schema",
        schema,
        "--from-bundle",
        str(bundle),
        env={},
        config=tmp_path / "absent.toml",
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # psycopg also warns that ending the aborted pipeline failed ("error ignored terminating");
    # the failure itself is one line.
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "replay failed in the target database: the disk is full" in errors[0]


def test_snapshot_failing_in_the_database_exits_1_with_its_error(
    pg_url: str, schema: str, tmp_path: Path
) -> None:
    execute(
        pg_url,
        sql.SQL("ALTER TABLE {} RENAME COLUMN commit_position TO moved").format(
            sql.Identifier(schema, "checkpoint")
        ),
    )
    output = tmp_path / "s.snapshot"
    result = run_usersvc(
        "snapshot",
        "--output",
        str(output),
        "--schema",
        schema,
        env={"DATABASE_URL": pg_url},
        config=tmp_path / "absent.toml",
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert 'snapshot failed: column "commit_position" does not exist' in result.stderr
    assert not output.exists()

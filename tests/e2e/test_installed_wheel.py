"""The distribution as a user installs it: a wheel in a fresh virtualenv, run outside the checkout.

Every other test imports the source tree; these build the sdist and, from it, the wheel (as a
release does), install the wheel with the locked runtime dependencies (requirements.lock, hashes
checked; pip's cache may serve the files) into a virtualenv of their own, and run its `usersvc`
from a temporary directory against the tests' real PostgreSQL and EventStoreDB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from psycopg import sql

from usersvc.events import UserCreated, encode_user_created, stream_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_PACKAGES = {"usersvc", "usersvc_cli", "service", "worker", "repro", "esdb_emulator"}
INSTALL_TIMEOUT = 240.0
COMMAND_TIMEOUT = 60.0
# Set by the caller's shell or by other tests; each command here gets only what it names.
INHERITED = {"PYTHONPATH", "DATABASE_URL", "DATABASE_SCHEMA", "ESDB_CONNECTION_STRING"}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    workdir: Path

    def usersvc(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the installed `usersvc` from outside the checkout, with only `env` configured."""
        clean = {key: value for key, value in os.environ.items() if key not in INHERITED}
        clean.update(USERSVC_CONFIG=str(self.workdir / "absent.toml"), LOG_LEVEL="WARNING", **env)
        return subprocess.run(
            [str(self.bin / "usersvc"), *args],
            cwd=self.workdir,
            env=clean,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )


def _run(*command: str | Path) -> None:
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    dist = tmp_path_factory.mktemp("dist")
    # No isolation: the build backend is the locked setuptools of this virtualenv.
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    (wheel,) = dist.glob("usersvc-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", venv)
    pip = (venv / "bin" / "python", "-m", "pip", "install", "--quiet")
    _run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock")
    _run(*pip, "--no-deps", wheel)
    return Installed(wheel=wheel, bin=venv / "bin", workdir=tmp_path_factory.mktemp("elsewhere"))


def migration_files() -> list[str]:
    return sorted(path.name for path in (ROOT / "migrations").glob("*.sql"))


def user_names(pg_url: str, schema: str) -> list[str]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT username FROM {} ORDER BY username").format(
                sql.Identifier(schema, "user")
            )
        ).fetchall()
    return [row[0] for row in rows]


def append_users(esdb_url: str, names: list[str]) -> None:
    client = EventStoreDBClient(esdb_url)
    try:
        for name in names:
            client.append_to_stream(
                stream_name(name),
                current_version=StreamState.NO_STREAM,
                events=NewEvent(
                    type="user-created",
                    data=encode_user_created(UserCreated(name, name.title(), datetime.now(UTC))),
                ),
            )
    finally:
        client.close()


def test_the_wheel_ships_the_sql_migrations_inside_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = sorted(
            Path(name).name
            for name in wheel.namelist()
            if name.startswith("usersvc/migrations/") and name.endswith(".sql")
        )
    assert shipped == migration_files()


def test_the_wheel_installs_only_the_projects_own_top_level_packages(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        top_level = {
            name.split("/", 1)[0] for name in wheel.namelist() if ".dist-info/" not in name
        }
    assert top_level == TOP_LEVEL_PACKAGES


def test_version_names_the_installed_release(installed: Installed) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = installed.usersvc("--version")
    assert (result.returncode, result.stdout) == (0, f"usersvc {version}\n"), result.stderr


def test_migrate_applies_the_packaged_sql(installed: Installed, pg_url: str, unique: str) -> None:
    schema = f"wheel_{unique}"
    result = installed.usersvc("migrate", DATABASE_URL=pg_url, DATABASE_SCHEMA=schema)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT version, name FROM {} ORDER BY version").format(
                sql.Identifier(schema, "schema_migrations")
            )
        ).fetchall()
    assert [f"{version:04d}_{name}.sql" for version, name in rows] == migration_files()


def test_export_then_replay_rebuild_the_users(
    installed: Installed, pg_url: str, esdb_url: str, unique: str, tmp_path: Path
) -> None:
    names = [f"wheel{unique}-{i}" for i in range(3)]
    append_users(esdb_url, names)
    prefix = stream_name(f"wheel{unique}-")
    bundle = tmp_path / "history.bundle"
    exported = installed.usersvc(
        "export", "--source-esdb", esdb_url, "--stream-prefix", prefix, "--output", str(bundle)
    )
    assert exported.returncode == 0, exported.stderr
    schema = f"wheel_{unique}"
    replayed = installed.usersvc(
        "replay",
        "--target-database-url",
        pg_url,
        "--schema",
        schema,
        "--from-bundle",
        str(bundle),
        "--stream-prefix",
        prefix,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert user_names(pg_url, schema) == names


def test_replay_from_a_snapshot_restores_the_users(
    installed: Installed, pg_url: str, esdb_url: str, unique: str, tmp_path: Path
) -> None:
    names = [f"snap{unique}-{i}" for i in range(2)]
    append_users(esdb_url, names)
    prefix = stream_name(f"snap{unique}-")
    source = ["--source-esdb", esdb_url, "--stream-prefix", prefix]
    first, second = f"snap_{unique}", f"again_{unique}"
    replayed = installed.usersvc(
        "replay", "--target-database-url", pg_url, "--schema", first, *source
    )
    assert replayed.returncode == 0, replayed.stderr
    snapshot = tmp_path / "read-model.snapshot"
    taken = installed.usersvc(
        "snapshot", "--database-url", pg_url, "--schema", first, "--output", str(snapshot)
    )
    assert taken.returncode == 0, taken.stderr
    restored = installed.usersvc(
        "replay",
        "--target-database-url",
        pg_url,
        "--schema",
        second,
        "--from-snapshot",
        str(snapshot),
        *source,
    )
    assert restored.returncode == 0, restored.stderr
    assert user_names(pg_url, second) == names


def test_dev_without_the_embedded_extra_says_so_in_one_line(installed: Installed) -> None:
    result = installed.usersvc(
        "dev",
        "--data-dir",
        str(installed.workdir / "dev"),
        "--http-port",
        "0",
        "--esdb-port",
        "0",
    )
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, len(lines)) == (1, 1), result.stderr
    assert "usersvc[embedded]" in lines[0]

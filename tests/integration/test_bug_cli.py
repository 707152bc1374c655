"""`usersvc bisect`, `replay --projection` and `export --redact-key-file` as a user runs them,
and the worked example of docs/replay.md: plant a bug, bisect it, replay with the fix, diff.

The planted bug is `tests.fixtures.planted.EmptiesCommaNames`; the fix is the worker's own
projection.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from repro.bundle import write_bundle
from tests.fixtures import planted
from tests.fixtures.cli import run_usersvc
from tests.fixtures.generated_history import VICTIM, generated
from usersvc.records import StoredEvent
from usersvc.settings import load_settings
from usersvc_cli.main import build_parser, run_command

COUNT = 5_000
VICTIM_AT = 3_210
BUGGY = "tests.fixtures.planted:EmptiesCommaNames"
PLANTED_FILE = str(Path(planted.__file__).resolve())


def usersvc(*argv: str) -> int:
    return run_command(build_parser().parse_args(list(argv)), load_settings())


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StoredEvent]]:
    events = generated(COUNT, victim=VICTIM_AT)
    path = tmp_path_factory.mktemp("bugcli") / "incident.bundle"
    write_bundle(path, events, {"source": "test", "streamPrefix": "user-"})
    return path, events


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> None:
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    for name in ("DATABASE_SCHEMA", "ESDB_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)


def test_bisect_prints_the_event_and_the_check_before_and_after(
    history: tuple[Path, list[StoredEvent]], pg_url: str, tmp_path: Path
) -> None:
    bundle, events = history
    victim = events[VICTIM_AT]
    done = run_usersvc(
        "bisect",
        "--from-bundle",
        str(bundle),
        "--projection",
        f"{PLANTED_FILE}:EmptiesCommaNames",
        "--check-sql",
        planted.EMPTY_NAMES,
        "--batch-size",
        "1000",
        env={"DATABASE_URL": pg_url},
        config=tmp_path / "absent.toml",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[:3] == [
        f"bisect of bundle {bundle.name}",
        f"  check:      {planted.EMPTY_NAMES} (SQL: wrong when it returns rows)",
        f"  projection: {PLANTED_FILE}:EmptiesCommaNames",
    ]
    out = out[2:]
    assert out[1] == f"bisect: the check first fails after event {VICTIM_AT + 1:,} of the range:"
    assert out[2:8] == [
        f"  position:  {victim.commit_position}",
        f"  stream:    user-{VICTIM}",
        "  type:      user-full-name-changed",
        "  revision:  1",
        f"  event id:  {victim.event_id}",
        f"  recorded:  {victim.recorded_at.isoformat()}",
    ]
    assert out[8].startswith('  data:      FullNameChanged {"username":"u0000000","full_name":')
    assert '"full_name":"Lee, Ann"' in out[8]
    before = out.index(
        f"check before it (the state after position {events[VICTIM_AT - 1].commit_position}):"
    )
    assert out[before + 1] == "  right: no rows"
    assert out[before + 2 : before + 6] == [
        "check after it:",
        "  wrong: 1 row",
        "    username | fullName",
        f"    {VICTIM} | ",
    ]
    assert any(
        line.startswith("rule (once the check fails, it keeps failing): held") for line in out
    )
    assert out[-1] == (
        f"the state after it, to look at: usersvc replay --from-bundle {bundle} --projection"
        f" {PLANTED_FILE}:EmptiesCommaNames --until-position {victim.commit_position}"
        " --target-database-url URL"
    )
    assert planted.leftovers(pg_url) == []


def test_bisect_with_a_check_that_never_fails_exits_1(
    history: tuple[Path, list[StoredEvent]], settings_env: None, capsys: Any
) -> None:
    bundle, _ = history
    # The worker's own projection has no such bug.
    assert usersvc("bisect", "--from-bundle", str(bundle), "--check-sql", planted.EMPTY_NAMES) == 1
    assert "bisect: the check never failed" in capsys.readouterr().out


def test_bisect_refuses_what_it_cannot_run(
    history: tuple[Path, list[StoredEvent]], settings_env: None, pg_url: str
) -> None:
    bundle = str(history[0])
    assert usersvc("bisect", "--from-bundle", bundle, "--check", "tests.fixtures.planted:nope") == 2
    assert usersvc("bisect", "--from-bundle", bundle, "--check", "no_such_module:f") == 2
    assert usersvc("bisect", "--from-bundle", bundle, "--check-sql", "SELEC oops") == 2
    assert (
        usersvc(
            "bisect",
            "--from-bundle",
            bundle,
            "--check-sql",
            "SELECT 1",
            "--projection",
            "tests.fixtures.planted:has_empty_name",
        )
        == 2
    )
    missing = str(Path(bundle).with_name("missing.bundle"))
    assert usersvc("bisect", "--from-bundle", missing, "--check-sql", "SELECT 1") == 2
    assert planted.leftovers(pg_url) == []


def test_an_interrupted_bisect_command_leaves_nothing_behind(
    history: tuple[Path, list[StoredEvent]], settings_env: None, pg_url: str
) -> None:
    bundle = str(history[0])
    assert (
        usersvc("bisect", "--from-bundle", bundle, "--check", "tests.fixtures.planted:interrupts")
        == 128 + signal.SIGINT
    )
    assert planted.leftovers(pg_url) == []


def test_replay_with_a_projection_names_it_in_the_manifest(
    history: tuple[Path, list[StoredEvent]], settings_env: None, pg_url: str, unique: str
) -> None:
    bundle = str(history[0])
    target = f"p_{unique}"
    argv = ["replay", "--target-database-url", pg_url, "--schema", target, "--from-bundle", bundle]
    assert usersvc(*argv, "--projection", BUGGY) == 0
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT details->>'projection' FROM {}").format(
                sql.Identifier(target, "replay_manifest")
            )
        ).fetchone()
    assert row == (BUGGY,)
    assert usersvc(*argv, "--force", "--projection", "tests.fixtures.planted:EMPTY_NAMES") == 2


def test_export_takes_a_key_file_only_with_fields_to_pseudonymize(
    history: tuple[Path, list[StoredEvent]], settings_env: None, tmp_path: Path
) -> None:
    # The source is the emulator-less bundle: export reads EventStoreDB only, so the refusal
    # comes before any reading.
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    output = tmp_path / "out.bundle"
    assert usersvc("export", "--output", str(output), "--redact-key-file", str(key)) == 2
    short = tmp_path / "short"
    short.write_text("tiny\n")
    argv = ["export", "--output", str(output), "--redact", "fullName", "--redact-key-file"]
    assert usersvc(*argv, str(short)) == 2
    assert not output.exists()


def test_the_worked_example_plant_bisect_fix_replay_diff(
    history: tuple[Path, list[StoredEvent]],
    settings_env: None,
    pg_url: str,
    unique: str,
    capsys: Any,
) -> None:
    bundle, events = history
    source = ["--from-bundle", str(bundle)]
    # 1. The bug shows with the buggy projection; bisect names the event.
    check = ["--check-sql", planted.EMPTY_NAMES]
    assert usersvc("bisect", *source, "--projection", BUGGY, *check) == 0
    assert f"position:  {events[VICTIM_AT].commit_position}" in capsys.readouterr().out
    # 2. Replay with the bug and with the fix; 3. diff: the fix changes exactly that user.
    buggy, fixed = f"buggy_{unique}", f"fixed_{unique}"
    target = ["--target-database-url", pg_url]
    assert usersvc("replay", *target, "--schema", buggy, *source, "--projection", BUGGY) == 0
    assert usersvc("replay", *target, "--schema", fixed, *source) == 0
    capsys.readouterr()
    assert usersvc("diff", pg_url, pg_url, "--schema-a", buggy, "--schema-b", fixed) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"differs:   {VICTIM}: fullName '' | 'Lee, Ann' (A | B)")
    assert lines[-1].startswith("the read models differ: 0 only in A, 0 only in B, 1 differing")

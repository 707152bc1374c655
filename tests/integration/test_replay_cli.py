"""`usersvc replay`, `export` and `snapshot` as a user runs them: arguments, exit codes, output.

The module has its own in-memory emulator, so `$all` holds only its events.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from psycopg import sql

from esdb_emulator import EmbeddedServer
from repro.bundle import read_bundle, read_manifest
from repro.bundle_format import EVENT, FRAME
from repro.progress import Progress
from tests.fixtures.bundles import assemble, frames, raw_content, rewrite
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.settings import load_settings
from usersvc_cli.main import build_parser, run_command

COUNT = 8


@pytest.fixture(scope="module")
def esdb() -> Iterator[tuple[str, list[int]]]:
    """An emulator holding COUNT users; yields its URL and their commit positions."""
    with EmbeddedServer() as server:
        client = EventStoreDBClient(server.connection_string)
        positions = []
        for i in range(COUNT):
            name = f"cli-{i}"
            positions.append(
                client.append_to_stream(
                    stream_name(name),
                    current_version=StreamState.NO_STREAM,
                    events=NewEvent(
                        type="user-created",
                        data=encode_user_created(
                            UserCreated(name, f"Person {i}", datetime.now(UTC))
                        ),
                    ),
                )
            )
        client.close()
        yield server.connection_string, positions


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, esdb: tuple[str, Any]) -> None:
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("ESDB_CONNECTION_STRING", esdb[0])
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_SCHEMA", raising=False)


def usersvc(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return run_command(args, load_settings())


def user_count(pg_url: str, schema: str) -> int | None:
    with psycopg.connect(pg_url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f'{schema}."user"',)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "user"))
        ).fetchone()
        return int(row[0]) if row else 0


def test_help_states_the_cutoff_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        usersvc("replay", "--help")
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "always a prefix of $all" in text
    assert "events stamped exactly TIME are in" in text


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        usersvc("replay", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit 2: refused, nothing written" in text
    assert "Exit 1: stopped partway" in text
    assert "Exit 130 (SIGINT) or 143 (SIGTERM): stopped partway on request, nothing written" in text


def test_replay_from_the_configured_source_prints_a_summary_and_records_a_manifest(
    settings_env: None, pg_url: str, unique: str, esdb: tuple[str, list[int]], capsys: Any
) -> None:
    positions = esdb[1]
    code = usersvc(
        "replay",
        "--target-database-url",
        pg_url,
        "--schema",
        f"c_{unique}",
        "--until-position",
        str(positions[4]),
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "5 applied, 0 skipped" in out
    assert f"positions {positions[0]} .. {positions[4]}" in out
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT until_spec, events_applied, last_position, checksum, code_version FROM {}"
            ).format(sql.Identifier(f"c_{unique}", "replay_manifest"))
        ).fetchone()
    assert row is not None
    assert row[:3] == (f"until position {positions[4]} (inclusive)", 5, positions[4])
    assert row[3] in out and row[3].startswith("sha256:")
    assert row[4]


def test_export_with_redaction_then_replay_from_the_bundle(
    settings_env: None, pg_url: str, unique: str, tmp_path: Path, capsys: Any
) -> None:
    bundle = tmp_path / "out.bundle"
    assert usersvc("export", "--output", str(bundle), "--redact", "fullName, username") == 0
    assert f"exported {COUNT} events" in capsys.readouterr().out
    manifest = read_manifest(bundle)
    assert manifest["redacted"] == ["fullName", "username"]
    assert manifest["streamPrefix"] == "user-"
    events = list(read_bundle(bundle))
    assert all(b"Person" not in e.data and b"cli-" not in e.data for e in events)
    assert all(e.stream.startswith("user-redacted-") for e in events)
    target = f"b_{unique}"
    assert (
        usersvc(
            "replay",
            "--target-database-url",
            pg_url,
            "--schema",
            target,
            "--from-bundle",
            str(bundle),
        )
        == 0
    )
    assert user_count(pg_url, target) == COUNT


def test_snapshot_then_replay_from_it_takes_only_what_came_after(
    settings_env: None,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    esdb: tuple[str, list[int]],
    capsys: Any,
) -> None:
    half, snapshot = f"h_{unique}", tmp_path / "half.snapshot"
    usersvc(
        "replay",
        "--target-database-url",
        pg_url,
        "--schema",
        half,
        "--until-position",
        str(esdb[1][2]),
    )
    assert (
        usersvc("snapshot", "--output", str(snapshot), "--database-url", pg_url, "--schema", half)
        == 0
    )
    assert f"snapshot of 3 rows at checkpoint {esdb[1][2]}" in capsys.readouterr().out
    rest = f"r_{unique}"
    assert (
        usersvc(
            "replay",
            "--target-database-url",
            pg_url,
            "--schema",
            rest,
            "--from-snapshot",
            str(snapshot),
        )
        == 0
    )
    assert f"{COUNT - 3} applied" in capsys.readouterr().out
    assert user_count(pg_url, rest) == COUNT
    # A snapshot that is already up to date restores and replays nothing.
    full, latest = f"f_{unique}", tmp_path / "latest.snapshot"
    assert (
        usersvc("snapshot", "--output", str(latest), "--database-url", pg_url, "--schema", rest)
        == 0
    )
    assert (
        usersvc(
            "replay",
            "--target-database-url",
            pg_url,
            "--schema",
            full,
            "--from-snapshot",
            str(latest),
        )
        == 0
    )
    assert user_count(pg_url, full) == COUNT


def test_a_damaged_bundle_exits_2_and_writes_nothing(
    settings_env: None, pg_url: str, unique: str, tmp_path: Path, caplog: Any
) -> None:
    bundle = tmp_path / "cut.bundle"
    assert usersvc("export", "--output", str(bundle)) == 0
    bundle.write_bytes(bundle.read_bytes()[:-20])
    target = f"d_{unique}"
    with caplog.at_level(logging.ERROR):
        code = usersvc(
            "replay",
            "--target-database-url",
            pg_url,
            "--schema",
            target,
            "--from-bundle",
            str(bundle),
        )
    assert code == 2
    assert "replay refused" in caplog.text and "truncated" in caplog.text
    assert user_count(pg_url, target) is None


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        (
            "positions out of order",
            lambda records: [records[0], records[2], records[1], *records[3:]],
            "event 3: its position",
        ),
        (
            "an event declaring 1.5 GiB",
            lambda records: records,
            "declares 1,610,612,736 bytes, more than",
        ),
    ],
)
def test_a_hostile_bundle_exits_2_with_one_line_and_writes_nothing(
    settings_env: None,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    caplog: Any,
    case: str,
    change: Any,
    message: str,
) -> None:
    bundle = tmp_path / "hostile.bundle"
    assert usersvc("export", "--output", str(bundle)) == 0
    records = [payload for kind, payload in frames(raw_content(bundle)) if kind == EVENT]
    content = assemble(b"{}", change(records))
    if case == "an event declaring 1.5 GiB":
        at = content.index(records[3]) - FRAME.size
        content = content[:at] + FRAME.pack(EVENT, 1536 << 20) + content[at + FRAME.size :]
    rewrite(bundle, content)
    target = f"h_{unique}"
    with caplog.at_level(logging.ERROR):
        code = usersvc(
            "replay",
            "--target-database-url",
            pg_url,
            "--schema",
            target,
            "--from-bundle",
            str(bundle),
        )
    assert code == 2
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("replay refused: ")
    assert message in caplog.text
    assert user_count(pg_url, target) is None


def test_an_unreachable_source_exits_2_and_leaves_no_file(
    settings_env: None, tmp_path: Path, caplog: Any
) -> None:
    output = tmp_path / "none.bundle"
    code = usersvc(
        "export", "--output", str(output), "--source-esdb", "esdb://127.0.0.1:1?tls=false"
    )
    assert code == 2
    assert "cannot read EventStoreDB" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_of_a_missing_schema_exits_2(
    settings_env: None, pg_url: str, unique: str, tmp_path: Path, caplog: Any
) -> None:
    output = tmp_path / "s.snapshot"
    code = usersvc(
        "snapshot", "--output", str(output), "--database-url", pg_url, "--schema", f"m_{unique}"
    )
    assert code == 2
    assert f"snapshot refused: schema m_{unique} holds no read model" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--until", "2026-01-01T00:00:00"], "no time zone"),
        (["--until", "yesterday"], "not an ISO-8601 time"),
        (["--until-position", "-3"], "not a commit position"),
        (["--until-event-id", "nope"], "not an event id"),
        (["--until-position", "5", "--until", "2026-01-01T00:00:00Z"], "not allowed with"),
        (["--from-bundle", "a", "--source-esdb", "b"], "not allowed with"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        usersvc("replay", "--target-database-url", "postgresql://x/y", *argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_progress_logs_rate_and_eta_when_not_on_a_terminal(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="repro.progress")
    progress = Progress("replay", span=(100, 1100), terminal=False)
    progress.update(50, 350)  # a quarter of the positions
    progress.log_line()
    assert progress.total == 200
    assert "replay: 50 of 200 events" in caplog.text
    assert "events/s, ETA" in caplog.text


def test_parser_has_the_three_commands() -> None:
    parser = build_parser()
    for command in ("replay", "export", "snapshot"):
        args = parser.parse_args(
            [command, "--output", "f"]
            if command != "replay"
            else [command, "--target-database-url", "u"]
        )
        assert isinstance(args, argparse.Namespace) and callable(args.run)

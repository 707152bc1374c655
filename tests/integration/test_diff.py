"""`usersvc diff` against real PostgreSQL: the live read model and a replay of the same history
are equal; deliberately different read models (in two databases) differ exactly as made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from esdbclient import EventStoreDBClient
from psycopg import sql

from esdb_emulator import EmbeddedServer
from repro import diff as diff_module
from repro.bundle import write_bundle
from repro.diff import Difference, DiffError, Side, diff
from repro.history import BundleSource, EsdbSource
from repro.replay import ReplayRequest, replay
from tests.fixtures.generated_history import VICTIM, generated
from tests.fixtures.lifecycle import Life
from tests.fixtures.planted import EmptiesCommaNames
from tests.fixtures.waiting import wait_for_checkpoint
from tests.fixtures.worker import WORKER, settings_for, worker_thread
from usersvc.settings import load_settings
from usersvc_cli.main import build_parser, run_command

COUNT = 1_000
VICTIM_AT = 500


def usersvc(*argv: str) -> int:
    return run_command(build_parser().parse_args(list(argv)), load_settings())


def differences(a: Side, b: Side) -> tuple[list[Difference], diff_module.Summary]:
    found: list[Difference] = []
    summary = diff(a, b, found.append)
    return found, summary


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("DATABASE_URL", "DATABASE_SCHEMA", "ESDB_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def other_database(pg_url: str, unique: str) -> Iterator[str]:
    """A second database on the same server: B of a diff lives apart from A."""
    name = f"diff_{unique}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    info["dbname"] = name
    yield psycopg.conninfo.make_conninfo(**info)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def made_different(
    pg_url: str, other_database: str, unique: str, tmp_path: Path
) -> tuple[Side, Side]:
    """A: the history replayed with the worker's projection. B, in another database: the same
    history with the planted bug (the victim's name emptied), then one row removed by hand and
    one added."""
    bundle = tmp_path / "history.bundle"
    write_bundle(bundle, generated(COUNT, victim=VICTIM_AT), {"streamPrefix": "user-"})
    a = Side(pg_url, f"a_{unique}")
    b = Side(other_database, f"b_{unique}")
    replay(BundleSource(bundle), ReplayRequest(a.url, a.schema, WORKER))
    replay(
        BundleSource(bundle),
        ReplayRequest(b.url, b.schema, WORKER, projection=EmptiesCommaNames),
    )
    with psycopg.connect(b.url) as conn:
        users = sql.Identifier(b.schema, "user")
        conn.execute(sql.SQL("DELETE FROM {} WHERE username = 'u0000005'").format(users))
        conn.execute(
            sql.SQL(
                'INSERT INTO {} (username, "createdAt", "fullName", "eventId", "commitPosition",'
                " revision) SELECT 'zz-extra', \"createdAt\", 'Extra', \"eventId\","
                " \"commitPosition\", 0 FROM {} WHERE username = 'u0000001'"
            ).format(users, users)
        )
    return a, b


@pytest.mark.emulator
def test_the_live_read_model_equals_a_replay_of_the_same_history(
    own_emulator: EmbeddedServer, pg_url: str, schema: str, unique: str, settings_env: None
) -> None:
    live = schema  # migrated, as the worker wants it
    settings = settings_for(own_emulator.connection_string, pg_url, live)
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        with worker_thread(settings):
            lives = [Life(client, f"dl-{i:03d}") for i in range(60)]
            for i, life in enumerate(lives):
                life.create(f"Person {i}")
            for life in lives[::3]:
                life.change("Changed Once")
            for life in lives[::5]:
                life.delete()
            for life in lives[::10]:
                life.create("Born Again")
            for life in lives[1::7]:
                life.change("Changed Twice")
            last = max(position for life in lives for position in life.positions)
            wait_for_checkpoint(pg_url, live, WORKER, last)
    finally:
        client.close()
    replayed = f"replayed_{unique}"
    source = EsdbSource(own_emulator.connection_string)
    try:
        replay(source, ReplayRequest(pg_url, replayed, WORKER))
    finally:
        source.close()
    found, summary = differences(Side(pg_url, live), Side(pg_url, replayed))
    assert found == []
    assert summary.equal == 60 - 12 + 6  # 12 deleted, 6 of them created again
    assert summary.checkpoints_a == summary.checkpoints_b
    assert usersvc("diff", pg_url, pg_url, "--schema-a", live, "--schema-b", replayed) == 0


def test_deliberately_different_read_models_differ_as_made(
    made_different: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff_module, "FETCH", 100)  # several round trips per side
    a, b = made_different
    found, summary = differences(a, b)
    assert [(d.kind, d.username, d.columns) for d in found] == [
        ("differs", VICTIM, ("fullName",)),
        ("only-a", "u0000005", ()),
        ("only-b", "zz-extra", ()),
    ]
    victim = found[0]
    assert victim.a is not None and victim.b is not None
    assert (victim.a.full_name, victim.b.full_name) == ("Lee, Ann", "")
    assert victim.a.event_id == victim.b.event_id
    assert (summary.only_a, summary.only_b, summary.differing) == (1, 1, 1)
    assert summary.equal == len(set(generated_users())) - 2
    assert summary.checkpoints_a == summary.checkpoints_b


def generated_users() -> list[str]:
    return [e.stream for e in generated(COUNT, victim=VICTIM_AT)]


def test_the_diff_command_prints_each_difference_and_exits_1(
    made_different: tuple[Side, Side], settings_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = made_different
    argv = ["diff", a.url, b.url, "--schema-a", a.schema, "--schema-b", b.schema]
    assert usersvc(*argv) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"differs:   {VICTIM}: fullName 'Lee, Ann' | '' (A | B); A: event ")
    assert lines[1].startswith("only in A: u0000005: createdAt ")
    assert lines[2].startswith("only in B: zz-extra: createdAt ")
    assert lines[-1] == (
        f"the read models differ: 1 only in A, 1 only in B, 1 differing,"
        f" {len(set(generated_users())) - 2} equal"
    )
    assert f"schema {a.schema}; checkpoint {WORKER} at " in lines[-3]
    assert usersvc(*argv, "--json", "--limit", "1") == 1
    objects = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["kind"] for o in objects] == ["differs", "summary"]
    assert objects[0]["a"]["fullName"] == "Lee, Ann"
    assert objects[0]["b"]["fullName"] == ""
    assert (objects[1]["onlyA"], objects[1]["onlyB"], objects[1]["differing"]) == (1, 1, 1)


def test_a_side_without_a_read_model_is_refused(
    pg_url: str, unique: str, settings_env: None, caplog: Any
) -> None:
    with pytest.raises(DiffError, match="holds no read model"):
        differences(Side(pg_url, f"none_{unique}"), Side(pg_url, f"none_{unique}"))
    assert usersvc("diff", pg_url, "postgresql://nobody@127.0.0.1:1/none") == 2

"""A replay stopped partway, as an operator stops it (SIGINT, SIGTERM: a real `usersvc replay`
process) and as a source that dies stops it (a real emulator process, killed): one line, an exit
code that says "stopped partway" (not "refused"), nothing written, so a half-built target never
passes for a finished one; and a target an interrupted replay of an earlier version left (rows,
no manifest) is refused with the way out (`--force`).

The replay is stopped at a known point by `tests.fixtures.stalling`: its first batch applied in
the replay's transaction, waiting inside PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from repro.bundle import write_bundle
from repro.cutoff import ReplayError
from repro.history import BundleSource
from repro.replay import ReplayFailed, ReplayHalted, ReplayRequest, ReplaySummary, replay
from tests.fixtures.cli import start_usersvc
from tests.fixtures.history import schema_exists
from tests.fixtures.processes import free_port, wait_for_line
from tests.fixtures.stalling import GO_ON, SPEC, STALLED
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.readmodel import ReadModel
from usersvc.records import StoredEvent
from worker.migrator import migrate

WORKER = "usersvc-read-model"
STOP_TIMEOUT = 30.0


def events(count: int, tag: str) -> Iterator[StoredEvent]:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    for i in range(count):
        at = start + timedelta(milliseconds=i)
        name = f"{tag}-{i}"
        yield StoredEvent(
            2_000 + 100 * i,  # the emulator's log begins at 1024
            stream_name(name),
            0,
            uuid.uuid5(uuid.NAMESPACE_URL, f"interrupted/{tag}/{i}"),
            "user-created",
            encode_user_created(UserCreated(name, f"Person {i}", at)),
            b'{"schemaVersion":1}',
            "application/json",
            at,
        )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupted") / "small.bundle"
    write_bundle(path, events(30, "small"), {"source": "test", "streamPrefix": "user-"})
    return path


def replay_process(
    pg_url: str, schema: str, tmp_path: Path, *source: str, force: bool = False, **env: str
) -> subprocess.Popen[bytes]:
    """`usersvc replay` into `schema` with the stalling projection; returned once it stalls."""
    process = start_usersvc(
        "replay",
        "--target-database-url",
        pg_url,
        "--schema",
        schema,
        *source,
        "--projection",
        SPEC,
        *(["--force"] if force else []),
        env=env,
        config=tmp_path / "absent.toml",
    )
    try:
        wait_for_line(process, STALLED, timeout=60)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process


def finish(process: subprocess.Popen[bytes]) -> tuple[int, list[str]]:
    """Wait (bounded) for the process; its exit status and the lines of stderr left to read."""
    try:
        _, err = process.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, [line for line in err.decode().splitlines() if line.strip()]


def table(pg_url: str, schema: str, query: str) -> list[tuple[Any, ...]]:
    model = ReadModel(schema)
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            sql.SQL(query).format(
                users=model.users, manifest=model.manifest, parked=model.parked_streams
            )
        ).fetchall()


def do_replay(bundle: Path, pg_url: str, schema: str, **kwargs: Any) -> ReplaySummary:
    return replay(
        BundleSource(bundle),
        ReplayRequest(target_url=pg_url, schema=schema, checkpoint_name=WORKER, **kwargs),
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_replay_with_one_line_an_exit_code_and_nothing_written(
    bundle: Path, pg_url: str, unique: str, tmp_path: Path, signum: signal.Signals
) -> None:
    target = f"i_{unique}"
    process = replay_process(pg_url, target, tmp_path, "--from-bundle", str(bundle))
    process.send_signal(signum)
    code, lines = finish(process)
    assert code == 128 + signum
    assert lines == [lines[0]]
    assert lines[0].endswith(
        f"ERROR replay usersvc: replay stopped partway: interrupted by {signum.name} before it"
        " finished; nothing was written (the replay is one transaction, rolled back): run the"
        " same command again"
    )
    assert not schema_exists(pg_url, target)


def test_a_forced_replay_that_is_interrupted_leaves_the_previous_replay_as_it_was(
    bundle: Path, pg_url: str, unique: str, tmp_path: Path
) -> None:
    target = f"f_{unique}"
    before = do_replay(bundle, pg_url, target)
    rows = table(pg_url, target, "SELECT * FROM {users} ORDER BY id")
    manifest = table(pg_url, target, "SELECT id, checksum, details->>'status' FROM {manifest}")
    assert manifest == [(manifest[0][0], before.checksum, "finished")]
    process = replay_process(pg_url, target, tmp_path, "--from-bundle", str(bundle), force=True)
    process.send_signal(signal.SIGTERM)
    code, _ = finish(process)
    assert code == 128 + signal.SIGTERM
    assert table(pg_url, target, "SELECT * FROM {users} ORDER BY id") == rows
    assert table(pg_url, target, "SELECT id, checksum, details->>'status' FROM {manifest}") == (
        manifest
    )


@pytest.mark.slow
def test_a_source_that_dies_midway_stops_the_replay_partway_and_nothing_is_written(
    pg_url: str, unique: str, tmp_path: Path
) -> None:
    """The emulator holds more events than the replay reads ahead while its first batch stalls
    (10,000 in the batch, 40,000 buffered), so it dies with the read of `$all` unfinished."""
    history = tmp_path / "large.bundle"
    write_bundle(history, events(100_000, "large"), {"source": "test", "streamPrefix": "user-"})
    port = free_port()
    emulator = start_usersvc(
        "emulator",
        "--mem",
        "--port",
        str(port),
        "--import",
        str(history),
        env={"LOG_LEVEL": "INFO"},
        config=tmp_path / "absent.toml",
    )
    go_on = tmp_path / "go-on"
    target = f"d_{unique}"
    try:
        wait_for_line(emulator, "listening on", timeout=60)
        process = replay_process(
            pg_url,
            target,
            tmp_path,
            "--source-esdb",
            f"esdb://127.0.0.1:{port}?tls=false",
            **{GO_ON: str(go_on)},
        )
    finally:
        emulator.kill()
        emulator.communicate()
    go_on.touch()
    code, lines = finish(process)
    assert code == 1
    assert lines == [lines[0]]
    assert (
        "replay stopped partway: the source failed while it was read: reading EventStoreDB"
        in (lines[0])
    )
    assert lines[0].endswith(
        "nothing was written (the replay is one transaction, rolled back): run the same command"
        " again when the source is back"
    )
    assert not schema_exists(pg_url, target)


class RunsOutOfMemory(BundleSource):
    """A bundle source whose reading fails unforeseen (as a `MemoryError`) after ten events."""

    def events(self, after: int | None) -> Iterator[StoredEvent]:
        for count, event in enumerate(super().events(after)):
            if count == 10:
                raise MemoryError
            yield event


def test_a_source_failing_unforeseen_is_stopped_partway_naming_the_error(
    bundle: Path, pg_url: str, unique: str
) -> None:
    target = f"u_{unique}"
    with pytest.raises(ReplayFailed) as failed:
        replay(
            RunsOutOfMemory(bundle),
            ReplayRequest(target_url=pg_url, schema=target, checkpoint_name=WORKER),
        )
    assert str(failed.value).startswith(
        "the source failed while it was read: MemoryError; nothing was written"
    )
    assert not schema_exists(pg_url, target)


def test_a_target_left_by_an_interrupted_replay_of_an_earlier_version_is_refused_with_advice(
    bundle: Path, pg_url: str, unique: str
) -> None:
    """Earlier versions committed batch by batch: an interrupt left rows and a checkpoint, and
    no manifest row."""
    target = f"o_{unique}"
    migrate(pg_url, target)
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            sql.SQL(
                'INSERT INTO {} (username, "createdAt", "fullName", "eventId", "commitPosition",'
                " revision) VALUES ('small-0', now(), 'Person 0', %s, 2000, 0)"
            ).format(ReadModel(target).users),
            (uuid.uuid4(),),
        )
    with pytest.raises(ReplayError) as refused:
        do_replay(bundle, pg_url, target)
    assert str(refused.value) == (
        f"the target schema {target} already holds data (table user has rows but there is no"
        " replay manifest: a live read model, or what an interrupted replay of an earlier version"
        " left (those committed as they went), not a finished replay); replay into a fresh"
        " database or schema, or pass --force to empty it and replay again"
    )
    assert do_replay(bundle, pg_url, target, force=True).applied == 30


def test_a_target_holding_only_parked_streams_is_refused_and_force_empties_them(
    bundle: Path, pg_url: str, unique: str
) -> None:
    target = f"p_{unique}"
    migrate(pg_url, target)
    model = ReadModel(target)
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (projection, stream, first_position, reason, attempts)"
                " VALUES (%s, 'user-poison', 2000, 'a test', 3)"
            ).format(model.parked_streams),
            (WORKER,),
        )
    with pytest.raises(ReplayError, match="table parked_stream has rows but there is no replay"):
        do_replay(bundle, pg_url, target)
    assert do_replay(bundle, pg_url, target, force=True).applied == 30
    assert table(pg_url, target, "SELECT count(*) FROM {parked}") == [(0,)]


@pytest.mark.parametrize(("halt", "status"), [(False, "finished"), (True, "halted")])
def test_the_manifest_says_whether_the_replay_finished_or_halted_and_a_rerun_names_it(
    pg_url: str, unique: str, tmp_path: Path, halt: bool, status: str
) -> None:
    good = list(events(5, "manifest"))
    if halt:  # a user-created without a full name: the projection cannot apply it
        good[3] = dataclasses.replace(good[3], data=b'{"username": "manifest-3"}')
    path = tmp_path / "m.bundle"
    write_bundle(path, good, {"source": "test"})
    target = f"m_{unique}"
    with pytest.raises(ReplayHalted) if halt else contextlib.nullcontext():
        do_replay(path, pg_url, target)
    assert table(pg_url, target, "SELECT details->>'status' FROM {manifest}") == [(status,)]
    with pytest.raises(ReplayError, match=r"already holds data \(a (finished )?replay of bundle"):
        do_replay(path, pg_url, target)

"""The worker against real PostgreSQL and real gRPC: catch-up, live, restarts and outages.

`$all` of the session's EventStoreDB is shared by every test, so these tests assert on their own
usernames. Tests that poison `$all` (a malformed event) or restart the server use a private
emulator of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from psycopg import sql

from tests.fixtures.damaged_logs import drop_frames_after
from tests.fixtures.history import append_users, projected
from tests.fixtures.waiting import logged, read_checkpoint, wait_for_checkpoint
from tests.fixtures.worker import WORKER, exit_code_within, settings_for, worker_thread
from usersvc.events import (
    USER_CREATED,
    stream_name,
)
from worker.runner import application_name, run


@contextmanager
def esdb_client(url: str) -> Iterator[EventStoreDBClient]:
    client = EventStoreDBClient(url)
    try:
        yield client
    finally:
        client.close()


def test_a_worker_started_after_1000_events_catches_up(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    names = [f"cu-{unique}-{i:04d}" for i in range(1000)]
    with esdb_client(esdb_url) as client:
        positions = append_users(client, names)
    with worker_thread(settings_for(esdb_url, pg_url, schema)):
        wait_for_checkpoint(pg_url, schema, WORKER, positions[-1], timeout=60)
    assert projected(pg_url, schema, f"cu-{unique}-") == list(zip(names, positions, strict=True))


def test_live_events_are_projected_and_unknown_types_skipped(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    with (
        esdb_client(esdb_url) as client,
        worker_thread(settings_for(esdb_url, pg_url, schema)),
    ):
        client.append_to_stream(
            stream_name(f"lv-{unique}-x"),
            current_version=StreamState.ANY,
            events=[NewEvent(type="user-renamed", data=b"whatever")],
        )
        positions = append_users(client, [f"lv-{unique}-a", f"lv-{unique}-b"])
        wait_for_checkpoint(pg_url, schema, WORKER, positions[-1], timeout=30)
    assert [name for name, _ in projected(pg_url, schema, f"lv-{unique}-")] == [
        f"lv-{unique}-a",
        f"lv-{unique}-b",
    ]


def test_a_worker_stopped_mid_stream_and_restarted_neither_duplicates_nor_loses(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    names = [f"rs-{unique}-{i:03d}" for i in range(300)]
    settings = settings_for(esdb_url, pg_url, schema, worker_batch_size=7)
    with esdb_client(esdb_url) as client:
        positions = append_users(client, names[:200])
        with worker_thread(settings):
            wait_for_checkpoint(pg_url, schema, WORKER, positions[50], timeout=30)
        with psycopg.connect(pg_url) as conn:
            stopped_at = read_checkpoint(conn, schema, WORKER)
        assert stopped_at is not None
        positions += append_users(client, names[200:])
        with worker_thread(settings):
            wait_for_checkpoint(pg_url, schema, WORKER, positions[-1], timeout=60)
    assert projected(pg_url, schema, f"rs-{unique}-") == list(zip(names, positions, strict=True))
    with psycopg.connect(pg_url) as conn:
        first, last, count = conn.execute(
            sql.SQL("SELECT min(id), max(id), count(*) FROM {} WHERE username LIKE %s").format(
                sql.Identifier(schema, "user")
            ),
            (f"rs-{unique}-%",),
        ).fetchone() or (0, 0, 0)
    # ON CONFLICT DO NOTHING still draws an id: an event applied twice would leave a gap among
    # this test's rows (appended back to back). Other tests' users in $all may have been deleted,
    # which leaves holes of their own elsewhere.
    assert last - first + 1 == count, "no event was applied twice after the restart"


def test_the_worker_reconnects_when_its_postgresql_connection_is_killed(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    settings = settings_for(esdb_url, pg_url, schema)
    with esdb_client(esdb_url) as client, worker_thread(settings):
        first = append_users(client, [f"pk-{unique}-a"])
        wait_for_checkpoint(pg_url, schema, WORKER, first[-1], timeout=30)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (application_name(settings),),
            ).fetchone()
        assert killed == (1,)
        second = append_users(client, [f"pk-{unique}-b", f"pk-{unique}-c"])
        wait_for_checkpoint(pg_url, schema, WORKER, second[-1], timeout=30)
    assert len(projected(pg_url, schema, f"pk-{unique}-")) == 3


def test_server_checkpoints_advance_the_stored_checkpoint_across_other_events(
    pg_url: str, schema: str, unique: str, tmp_path: Path
) -> None:
    from esdb_emulator import EmbeddedServer

    with EmbeddedServer(data_dir=tmp_path) as server, esdb_client(server.connection_string) as c:
        mine = append_users(c, [f"sc-{unique}"])
        other = [NewEvent(type="noise", data=b"{}") for _ in range(6000)]
        c.append_to_stream(f"other-{unique}", current_version=StreamState.ANY, events=other)
        with worker_thread(settings_for(server.connection_string, pg_url, schema)):
            reached = wait_for_checkpoint(pg_url, schema, WORKER, mine[-1] + 1, timeout=30)
    assert reached > mine[-1]


def test_the_worker_resumes_after_eventstoredb_restarts(
    pg_url: str, schema: str, unique: str, tmp_path: Path
) -> None:
    from esdb_emulator import EmbeddedServer

    with EmbeddedServer(data_dir=tmp_path) as server:
        settings = settings_for(server.connection_string, pg_url, schema)
        with worker_thread(settings):
            with esdb_client(server.connection_string) as client:
                before = append_users(client, [f"er-{unique}-a"])
            wait_for_checkpoint(pg_url, schema, WORKER, before[-1], timeout=30)
            server.stop()
            server.start()
            with esdb_client(server.connection_string) as client:
                after = append_users(client, [f"er-{unique}-b"])
            wait_for_checkpoint(pg_url, schema, WORKER, after[-1], timeout=60)
    assert [n for n, _ in projected(pg_url, schema, f"er-{unique}-")] == [
        f"er-{unique}-a",
        f"er-{unique}-b",
    ]


def test_without_parking_a_malformed_event_stops_the_worker_loudly_naming_its_position(
    pg_url: str, schema: str, unique: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from esdb_emulator import EmbeddedServer

    with EmbeddedServer(data_dir=tmp_path) as server:
        with esdb_client(server.connection_string) as client:
            good = append_users(client, [f"mf-{unique}-a"])
            bad = client.append_to_stream(
                stream_name(f"mf-{unique}-b"),
                current_version=StreamState.NO_STREAM,
                events=[NewEvent(type=USER_CREATED, data=b'{"username": 42}')],
            )
            append_users(client, [f"mf-{unique}-c"])
        code = run(
            settings_for(server.connection_string, pg_url, schema, worker_park_after_attempts=0)
        )
    assert code == 1
    assert f"commit position {bad}" in caplog.text
    # The halting rule: what came before the bad event is committed, nothing after it is.
    assert [n for n, _ in projected(pg_url, schema, f"mf-{unique}-")] == [f"mf-{unique}-a"]
    with psycopg.connect(pg_url) as conn:
        assert read_checkpoint(conn, schema, WORKER) == good[-1]


def test_a_checkpoint_ahead_of_the_head_of_all_stops_the_worker_naming_both_positions(
    pg_url: str, schema: str, unique: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from esdb_emulator import EmbeddedServer

    server = EmbeddedServer(data_dir=tmp_path)
    with server:
        settings = settings_for(server.connection_string, pg_url, schema)
        with esdb_client(server.connection_string) as client:
            positions = append_users(client, [f"hl-{unique}-{n}" for n in range(3)])
        with worker_thread(settings):
            wait_for_checkpoint(pg_url, schema, WORKER, positions[-1], timeout=30)
    # EventStoreDB loses its last two events (the emulator before it refused damage did this).
    drop_frames_after(tmp_path, -3)
    with server:
        code = exit_code_within(settings, timeout=30)
    assert code == 1
    assert (
        f"the stored checkpoint, commit position {positions[-1]}, is ahead of the head of "
        f"$all, commit position {positions[0]}"
    ) in caplog.text


def test_a_second_worker_stands_by_and_takes_over_when_the_first_stops(
    esdb_url: str, pg_url: str, schema: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker.runner")
    settings = settings_for(esdb_url, pg_url, schema)
    with (
        logged("worker.runner", "standing by") as standing_by,
        esdb_client(esdb_url) as client,
        worker_thread(settings) as stop_first,
    ):
        first = append_users(client, [f"sb-{unique}-a"])
        wait_for_checkpoint(pg_url, schema, WORKER, first[-1], timeout=30)
        with worker_thread(settings), logged("worker.runner", "took over") as took_over:
            assert standing_by.wait(30), "the second worker never stood by"
            stop_first.set()
            # The first worker stops and releases its lock; the second takes over within its
            # standby poll, and only then is there something new to project.
            assert took_over.wait(30), "the second worker never took over"
            second = append_users(client, [f"sb-{unique}-b"])
            wait_for_checkpoint(pg_url, schema, WORKER, second[-1], timeout=30)
    assert len(projected(pg_url, schema, f"sb-{unique}-")) == 2

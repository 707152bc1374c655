"""The service's answers while its dependencies fail, against real ones the tests break on
purpose: an emulator restarted under writes, a PostgreSQL frozen (SIGSTOP), a store whose head
is behind the read model's checkpoint. Each is bounded in time and count."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from esdbclient import EventStoreDBClient
from esdbclient.exceptions import NotFound
from flask import Flask

from service.app import close_app, create_app
from tests.fixtures.fault_servers import EmulatorProcess, OwnPostgres
from usersvc.events import stream_name
from usersvc.readmodel import ReadModel
from usersvc.settings import Settings
from worker.migrator import migrate

WRITERS = 8
RESTARTS = 4
# 201s between two restarts: the service has recovered before the next one.
WRITES_BETWEEN = 20
STEP_TIMEOUT = 20.0
UNAVAILABLE_CODES = {"append_outcome_unknown", "event_store_unavailable", "event_store_busy"}


def make_app(esdb_url: str, pg_url: str, schema: str, **overrides: Any) -> Flask:
    return create_app(
        Settings(
            esdb_connection_string=esdb_url,
            database_url=pg_url,
            database_schema=schema,
            **overrides,
        )
    )


@dataclass(frozen=True)
class Answer:
    username: str
    status: int
    code: str | None
    retry_after: str | None


def test_an_event_store_restarted_under_writes_answers_201_or_503_and_each_retry_lands_once(
    esdb_process: EmulatorProcess, pg_url: str, schema: str, unique: str
) -> None:
    app = make_app(esdb_process.url, pg_url, schema, esdb_timeout=2.0)
    answers: list[Answer] = []
    stop = threading.Event()

    def write(writer: int) -> None:
        client = app.test_client()
        sent = 0
        while not stop.is_set():
            username = f"w{writer}-{sent}-{unique}"
            sent += 1
            response = client.post(
                "/users",
                json={"username": username, "fullName": "Restart"},
                headers={"X-Request-ID": username},
            )
            code = response.json["error"]["code"] if response.status_code != 201 else None
            answers.append(
                Answer(username, response.status_code, code, response.headers.get("Retry-After"))
            )

    def created() -> int:
        return sum(1 for answer in answers if answer.status == 201)

    def more_created() -> None:
        before = created()
        _wait_until(lambda: created() >= before + WRITES_BETWEEN)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in writers:
        thread.start()
    try:
        for restart in range(RESTARTS):
            more_created()
            esdb_process.stop(kill=restart % 2 == 1)
            esdb_process.start()
        more_created()
    finally:
        stop.set()
        for thread in writers:
            thread.join(STEP_TIMEOUT)
    try:
        failed = [a for a in answers if a.status != 201]
        assert [a for a in failed if a.status != 503] == []
        assert [a for a in failed if a.code not in UNAVAILABLE_CODES or not a.retry_after] == []
        client = app.test_client()
        for answer in failed:
            retried = client.post(
                "/users",
                json={"username": answer.username, "fullName": "Restart"},
                headers={"X-Request-ID": answer.username},
            )
            assert retried.status_code == 201, (answer, retried.json)
        with EventStoreDBClient(esdb_process.url) as esdb:
            counts = {a.username: _count(esdb, a.username) for a in answers}
        assert {name for name, count in counts.items() if count != 1} == set()
    finally:
        close_app(app)


def _count(esdb: EventStoreDBClient, username: str) -> int:
    try:
        return len(esdb.get_stream(stream_name(username)))
    except NotFound:
        return 0


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "no progress within the step's bound"
        time.sleep(0.05)  # polling the test's own counter of answers, not the worker


def _timed(app: Flask, path: str, limit: float) -> tuple[int, float]:
    """GET `path` in a thread; its status and seconds taken, or a failure once `limit` passes."""
    result: list[tuple[int, float]] = []

    def get() -> None:
        started = time.monotonic()
        status = app.test_client().get(path).status_code
        result.append((status, time.monotonic() - started))

    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    thread.join(limit)
    assert result, f"GET {path} did not answer within {limit} s"
    return result[0]


@pytest.mark.parametrize("path", ["/users/nobody", "/readyz", "/health"])
def test_a_frozen_postgresql_is_503_within_the_bound_then_serves_again(
    own_postgres: OwnPostgres, esdb_url: str, unique: str, path: str
) -> None:
    schema = f"t_{unique}"
    migrate(own_postgres.url, schema)
    app = make_app(
        esdb_url, own_postgres.url, schema, db_statement_timeout=1.0, db_pool_timeout=1.0
    )
    healthy = {"/users/nobody": 404, "/readyz": 200, "/health": 200}[path]
    # Bound: the statement timeout, the slack after which the client cuts the connection off,
    # the watchdog's tick; plus 2 s for a busy machine.
    bound = 1.0 + 0.5 + 0.1 + 2.0
    try:
        assert _timed(app, path, 30)[0] == healthy  # a pooled connection, in use
        with own_postgres.frozen():
            status, elapsed = _timed(app, path, 30)
            assert status == 503
            assert elapsed < bound, f"took {elapsed:.2f} s"
            again, elapsed = _timed(app, path, 30)
            assert again == 503
            assert elapsed < bound, f"the second took {elapsed:.2f} s"
        assert _timed(app, path, 30)[0] == healthy
    finally:
        close_app(app)


@pytest.mark.parametrize("path", ["/health", "/readyz"])
def test_a_checkpoint_past_the_head_of_all_fails_the_probes_naming_it(
    esdb_url: str, pg_url: str, schema: str, path: str
) -> None:
    """The read model was built from history the store no longer has (a store restored from an
    older backup, a log cut short): its checkpoint is past the newest event of `$all`."""
    with EventStoreDBClient(esdb_url) as esdb:
        head = esdb.get_commit_position(filter_exclude=[])
    app = make_app(esdb_url, pg_url, schema, worker_name="lost-history")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(ReadModel(schema).move_checkpoint, ("lost-history", head + 10**9))
    try:
        response = app.test_client().get(path)
        assert response.status_code == 503
        body = response.json
        assert body is not None
        assert body["problems"] == ["checkpoint_ahead_of_store"]
        assert body["checks"]["projection"]["status"] == "ahead"
    finally:
        close_app(app)

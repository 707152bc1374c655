"""`serve()` over real HTTP: gunicorn and the debug server answer, then exit 0 on SIGTERM/SIGINT.

Also `/health` against the real emulator and PostgreSQL, with checkpoint rows written directly.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

from service.app import close_app, create_app
from tests.fixtures.processes import children_of, wait_for_all_exit, wait_for_any_exit
from usersvc.settings import Settings


@pytest.mark.parametrize(
    ("debug", "stop_signal"),
    [
        (False, signal.SIGTERM),
        (False, signal.SIGINT),
        (True, signal.SIGTERM),
        (True, signal.SIGINT),
    ],
    ids=["gunicorn SIGTERM", "gunicorn SIGINT", "debug SIGTERM", "debug SIGINT"],
)
def test_serve_answers_real_http_then_returns_0_on_a_stop_signal(
    start_serve: Callable[..., tuple[str, subprocess.Popen[bytes]]],
    unique: str,
    debug: bool,
    stop_signal: signal.Signals,
) -> None:
    base, process = start_serve(debug)
    created = httpx.post(
        f"{base}/users", json={"username": f"srv-{unique}", "fullName": "Served"}, timeout=10
    )
    assert created.status_code == 201, created.text
    assert httpx.get(f"{base}/nope", timeout=5).json()["error"]["code"] == "not_found"
    process.send_signal(stop_signal)
    # serve() returned 0 (the child exits with 100 + its return value).
    assert process.wait(30) == 100


def test_a_gunicorn_worker_leaving_keeps_the_metrics_folder_of_the_others(
    start_serve: Callable[..., tuple[str, subprocess.Popen[bytes]]],
) -> None:
    """Workers are forks of `serve()` and leave through sys.exit(): one leaving must not remove
    the metrics folder the others (and any still starting) write to."""
    base, process = start_serve(False, HTTP_WORKERS="2")
    workers = children_of(process.pid)
    assert workers, "gunicorn started no worker"
    process.send_signal(signal.SIGTTOU)  # one worker fewer: gunicorn stops the oldest
    wait_for_any_exit(workers, timeout=30)
    assert httpx.get(f"{base}/livez", timeout=10).status_code == 200
    scraped = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'route="/livez"' in scraped, "the remaining worker's samples are gone"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 100


def test_gunicorn_workers_stop_when_their_master_is_killed(
    start_serve: Callable[..., tuple[str, subprocess.Popen[bytes]]],
) -> None:
    """A master killed with SIGKILL cannot stop its workers: they notice and stop themselves,
    rather than serving on, and holding the port, with no master."""
    _, process = start_serve(False)
    workers = children_of(process.pid)
    assert workers, "gunicorn started no worker"
    process.kill()
    process.wait(10)
    wait_for_all_exit(workers, timeout=15)


def set_checkpoint(pg_url: str, schema: str, position: int, age_seconds: float) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, commit_position, updated_at)"
                " VALUES ('usersvc-read-model', %s, now() - make_interval(secs => %s))"
                " ON CONFLICT (name) DO UPDATE"
                " SET commit_position = EXCLUDED.commit_position, updated_at = EXCLUDED.updated_at"
            ).format(sql.Identifier(schema, "checkpoint")),
            (position, age_seconds),
        )


def test_health_compares_the_checkpoint_with_the_head_of_all(
    esdb_url: str, pg_url: str, schema: str, unique: str
) -> None:
    app = create_app(
        Settings(
            esdb_connection_string=esdb_url,
            database_url=pg_url,
            database_schema=schema,
            health_startup_grace=0,  # no grace: stalled from the first probe
        )
    )
    client = app.test_client()
    try:
        created = client.post("/users", json={"username": f"h-{unique}", "fullName": "H"})
        head = created.json["commitPosition"]  # type: ignore[index]

        set_checkpoint(pg_url, schema, head, age_seconds=3600)
        caught_up = client.get("/health")
        assert caught_up.status_code == 200, caught_up.json
        projection = caught_up.json["checks"]["projection"]  # type: ignore[index]
        assert projection["status"] == "caught_up"
        assert projection["checkpoint"] == head

        set_checkpoint(pg_url, schema, head - 1, age_seconds=1)
        assert client.get("/health").json["checks"]["projection"]["status"] == "behind"  # type: ignore[index]

        set_checkpoint(pg_url, schema, head - 1, age_seconds=3600)
        stalled = client.get("/health")
        assert stalled.status_code == 503
        assert stalled.json["problems"] == ["projection_stalled"]  # type: ignore[index]
    finally:
        close_app(app)


def test_a_chunked_body_is_read_whole_and_refused_at_the_limit_under_gunicorn(
    start_serve: Callable[..., tuple[str, subprocess.Popen[bytes]]], unique: str
) -> None:
    base, _ = start_serve(False)

    def chunks(name: str, padding: int) -> Iterator[bytes]:
        yield f'{{"username": "{name}", "fullName": "Chunked'.encode()
        for _ in range(padding):
            yield b"x" * 1000
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    small = httpx.post(
        f"{base}/users", content=chunks(f"chunk-{unique}", 0), headers=headers, timeout=10
    )
    assert small.status_code == 201, small.text
    big = httpx.post(
        f"{base}/users", content=chunks(f"big-{unique}", 40), headers=headers, timeout=10
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"

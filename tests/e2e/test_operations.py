"""Operating the real processes: the service under gunicorn with two workers and the worker with
its metrics port; their metrics move with what they do, every line they log is JSON, and no line
ever holds the password of DATABASE_URL (also while PostgreSQL is unreachable, or the URL is
malformed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.fixtures.operations import HeldBack, Logged, json_lines, scrape, value
from tests.fixtures.processes import free_port, stop_process, wait_for_http
from tests.fixtures.waiting import wait_for_checkpoint

pytestmark = pytest.mark.slow

SECRET = "Pa55-w0rd-of-the-tests"
USERS = 6


def with_password(url: str, password: str) -> str | None:
    """`url` with `password` in it; None when it already has one (the test cannot add its own)."""
    parts = urlsplit(url)
    if parts.password:
        return None
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0] or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def secret_url(pg_url: str) -> str:
    """DATABASE_URL with SECRET as its password, which the test server accepts (it trusts local
    connections and ignores the password)."""
    url = with_password(pg_url, SECRET)
    if url is None:
        pytest.skip("the test PostgreSQL URL has a password of its own: no password can be added")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"the test PostgreSQL checks passwords, so SECRET cannot be used: {exc}")
    return url


@dataclass
class Observed:
    base: str
    worker_metrics: str
    service: Logged
    worker: Logged
    pg_url: str
    schema: str
    worker_name: str

    def stop(self) -> tuple[list[str], list[str]]:
        codes = [stop_process(self.service.process), stop_process(self.worker.process)]
        assert codes == [0, 0], f"service and worker must stop cleanly, got {codes}"
        return self.service.finish(), self.worker.finish()


@pytest.fixture
def observed(esdb_url: str, secret_url: str, schema: str, unique: str) -> Iterator[Observed]:
    port, metrics_port = free_port(), free_port()
    worker_name = f"ops-{unique}"
    env = {
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": secret_url,
        "DATABASE_SCHEMA": schema,
        "WORKER_NAME": worker_name,
        "HTTP_PORT": str(port),
        "HTTP_WORKERS": "2",
        "WORKER_METRICS_PORT": str(metrics_port),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "ACCESS_LOG": "true",
        "MIN_POSITION_WAIT": "0.2",
    }
    service = Logged.start("serve", env=env)
    worker = Logged.start("worker", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/livez", service.process)
        worker.wait_for(lambda line: "caught up at commit position" in line)
        yield Observed(
            base,
            f"http://127.0.0.1:{metrics_port}/metrics",
            service,
            worker,
            secret_url,
            schema,
            worker_name,
        )
    finally:
        stop_process(service.process)
        stop_process(worker.process)
        service.finish()
        worker.finish()


def register(base: str, username: str, request_id: str | None = None) -> int:
    headers = {"X-Request-ID": request_id} if request_id else {}
    # A connection of its own for each, so both gunicorn workers answer some.
    response = httpx.post(
        f"{base}/users", json={"username": username, "fullName": "Ops Person"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return int(response.headers["X-Commit-Position"])


def test_service_metrics_add_up_every_gunicorn_worker_and_move(
    observed: Observed, unique: str
) -> None:
    before = scrape(f"{observed.base}/metrics")
    for i in range(USERS):
        register(observed.base, f"m{i}-{unique}")
    missing = [httpx.get(f"{observed.base}/users/nobody-{i}-{unique}") for i in range(USERS)]
    assert {r.status_code for r in missing} == {404}
    after = scrape(f"{observed.base}/metrics")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"method": "GET", "route": "/users/<username>", "status": "404"}
    assert moved("usersvc_http_requests_total", method="POST", route="/users", status="201") == 6
    assert moved("usersvc_http_requests_total", **route) == USERS
    assert moved("usersvc_http_request_duration_seconds_count", **route) == USERS
    assert moved("usersvc_eventstore_appends_total", outcome="ok") == USERS
    assert moved("usersvc_eventstore_append_duration_seconds_count", outcome="ok") == USERS
    assert moved("usersvc_eventstore_append_duration_seconds_sum", outcome="ok") > 0


def test_worker_metrics_follow_the_projection_and_its_lag(observed: Observed, unique: str) -> None:
    before = scrape(observed.worker_metrics)
    positions = [register(observed.base, f"w{i}-{unique}") for i in range(USERS)]
    wait_for_checkpoint(observed.pg_url, observed.schema, observed.worker_name, positions[-1])
    after = scrape(observed.worker_metrics)
    projected = "usersvc_worker_events_projected_total"
    assert (
        value(after, projected, type="user-created") - value(before, projected, type="user-created")
        == USERS
    )
    assert value(after, "usersvc_worker_checkpoint_position") == positions[-1]
    assert value(after, "usersvc_worker_head_position") == positions[-1]
    assert (
        value(after, "usersvc_worker_batch_size_sum")
        - value(before, "usersvc_worker_batch_size_sum")
        == USERS
    )
    assert value(after, "usersvc_worker_batch_duration_seconds_count") > value(
        before, "usersvc_worker_batch_duration_seconds_count"
    )
    assert value(after, "usersvc_worker_leader") == 1
    assert value(after, "usersvc_worker_caught_up") == 1
    assert value(after, "usersvc_worker_lag_events") == 0
    assert value(after, "usersvc_worker_lag_seconds") == 0

    # Held back by a lock on its checkpoint row, the worker is one event behind the head.
    held = HeldBack(observed.pg_url, observed.schema, observed.worker_name)
    try:
        late = register(observed.base, f"late-{unique}")
        behind = scrape(observed.worker_metrics)
    finally:
        held.release()
    assert value(behind, "usersvc_worker_lag_events") == 1
    assert value(behind, "usersvc_worker_head_position") == late
    assert value(behind, "usersvc_worker_checkpoint_position") == positions[-1]
    assert value(behind, "usersvc_worker_lag_seconds") >= 0


def test_the_worker_answers_livez_on_its_metrics_port(observed: Observed) -> None:
    response = httpx.get(observed.worker_metrics.replace("/metrics", "/livez"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_every_line_is_json_with_request_ids_and_without_the_password(
    observed: Observed, unique: str
) -> None:
    first = register(observed.base, f"log-{unique}", request_id=f"req-{unique}")
    wait_for_checkpoint(observed.pg_url, observed.schema, observed.worker_name, first)
    # A 503 (logged as a warning, with its request id): a read the held-back worker cannot serve.
    held = HeldBack(observed.pg_url, observed.schema, observed.worker_name)
    try:
        late = register(observed.base, f"late-{unique}")
        behind = httpx.get(
            f"{observed.base}/users/late-{unique}",
            headers={"X-Min-Position": str(late), "X-Request-ID": f"behind-{unique}"},
        )
    finally:
        held.release()
    assert behind.status_code == 503
    service_lines, worker_lines = observed.stop()
    service, worker = json_lines(service_lines), json_lines(worker_lines)

    access = [e for e in service if e["logger"] == "gunicorn.access"]
    (created,) = [e for e in access if e.get("request_id") == f"req-{unique}"]
    assert (created["method"], created["path"], created["status"]) == ("POST", "/users", 201)
    assert created["duration_ms"] > 0
    warned = [e for e in service if e["logger"] == "service.errors"]
    assert [e["request_id"] for e in warned] == [f"behind-{unique}"]
    assert any(e["logger"] == "gunicorn.error" for e in service)
    assert len({e["pid"] for e in access}) >= 1
    caught_up = [e for e in worker if e["message"].startswith("caught up at commit position")]
    assert caught_up
    assert all(isinstance(e["checkpoint"], int) for e in caught_up)
    assert not [line for line in service_lines + worker_lines if SECRET in line]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}@127.0.0.1:{closed_port()}/users",
        f"postgresql://app:{SECRET}%zz@127.0.0.1:{closed_port()}/users",
    ],
    ids=["unreachable", "malformed"],
)
def test_no_line_holds_the_password_while_postgresql_fails(
    esdb_url: str, unique: str, url: str
) -> None:
    port = free_port()
    env = {
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": url,
        "DATABASE_SCHEMA": f"t_{unique}",
        "HTTP_PORT": str(port),
        "HTTP_WORKERS": "1",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "WORKER_BACKOFF_MAX": "0.5",
    }
    worker = Logged.start("worker", env=env)
    service = Logged.start("serve", env=env)
    try:
        # Retrying PostgreSQL, or refusing the URL and exiting: either way it has said why.
        worker.wait_for(lambda line: "PostgreSQL" in line, or_exit=True)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/livez", service.process)
            serving = True
        except AssertionError:
            serving = False  # it refused the URL at start-up, and said so
        if serving:
            assert httpx.get(f"http://127.0.0.1:{port}/users/ann", timeout=10).status_code == 503
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 503
    finally:
        stop_process(worker.process)
        stop_process(service.process)
    lines = worker.finish() + service.finish()
    json_lines(lines)
    assert lines
    assert not [line for line in lines if SECRET in line]

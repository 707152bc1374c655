"""The worker's metrics, taken from outside its pipeline: what a committed batch did (by event
type), the halting rule's partial batch, and the runner's reconnects, on a real PostgreSQL."""

from __future__ import annotations

import logging
import threading

import httpx
import psycopg
import pytest

from tests.fixtures.events import created, malformed, other
from tests.fixtures.operations import scrape, value
from tests.fixtures.processes import free_port
from tests.fixtures.waiting import logged
from usersvc.records import StoredEvent
from usersvc.settings import Settings
from worker.metrics import MAX_SKIPPED_TYPES, MeasuredProjection, WorkerMetrics
from worker.pipeline import Committed, project
from worker.projection import ProjectionError
from worker.reader import Reader
from worker.runner import run


def metrics() -> WorkerMetrics:
    # Nothing here scrapes the lag, so no EventStoreDB is needed.
    return WorkerMetrics("esdb://127.0.0.1:1?tls=false", 1.0)


def sample(measured: WorkerMetrics, name: str, **labels: str) -> float:
    found = measured.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def run_pipeline(
    pg_url: str, schema: str, events: list[StoredEvent], measured: WorkerMetrics
) -> None:
    projection = MeasuredProjection(schema, "metrics")

    def committed(batch: Committed) -> None:
        applied, seconds = projection.take()
        measured.committed(batch, applied)
        if seconds is not None:
            measured.batch_took(seconds)

    reader = Reader(iter(events), capacity=100, endless=False)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            project(conn, reader, projection, batch_size=100, batch_wait=0.01, on_commit=committed)
    finally:
        reader.close()


def test_a_committed_batch_is_counted_by_event_type(pg_url: str, schema: str, unique: str) -> None:
    measured = metrics()
    events = [
        created(10, f"a-{unique}"),
        other(20, f"user-a-{unique}", "user-email-verified"),
        created(30, f"b-{unique}"),
    ]
    run_pipeline(pg_url, schema, events, measured)
    projected = "usersvc_worker_events_projected_total"
    assert sample(measured, projected, type="user-created") == 2
    assert sample(measured, "usersvc_worker_events_skipped_total", type="user-email-verified") == 1
    assert sample(measured, "usersvc_worker_checkpoint_position") == 30
    assert sample(measured, "usersvc_worker_batch_size_sum") == 3
    assert sample(measured, "usersvc_worker_batch_duration_seconds_count") == 1


def test_a_halted_batch_counts_only_what_was_committed(
    pg_url: str, schema: str, unique: str
) -> None:
    measured = metrics()
    events = [created(10, f"a-{unique}"), malformed(20, f"b-{unique}"), created(30, f"c-{unique}")]
    with pytest.raises(ProjectionError):
        run_pipeline(pg_url, schema, events, measured)
    assert sample(measured, "usersvc_worker_events_projected_total", type="user-created") == 1
    assert sample(measured, "usersvc_worker_checkpoint_position") == 10


def test_skipped_types_beyond_the_cap_share_one_label(
    pg_url: str, schema: str, unique: str
) -> None:
    measured = metrics()
    count = MAX_SKIPPED_TYPES + 3
    events = [other(10 + i, f"user-x-{unique}", f"type-{i}") for i in range(count)]
    run_pipeline(pg_url, schema, events, measured)
    skipped = "usersvc_worker_events_skipped_total"
    assert sample(measured, skipped, type="type-0") == 1
    assert sample(measured, skipped, type="other") == 3


def test_the_runner_counts_reconnects_and_keeps_the_lock_meanwhile(
    pg_url: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = Settings(
        esdb_connection_string=f"esdb://127.0.0.1:{free_port()}?tls=false",
        database_url=pg_url,
        database_schema=schema,
        worker_name="metrics-reconnects",
        worker_metrics_port=port,
        worker_backoff_initial=0.05,
        worker_backoff_max=0.1,
    )
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="worker")
    with logged("worker.runner", "(attempt 2)") as retried:
        worker = threading.Thread(target=run, args=(settings,), kwargs={"stop": stop})
        worker.start()
        try:
            assert retried.wait(30)
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
            live = httpx.get(f"http://127.0.0.1:{port}/livez")
        finally:
            stop.set()
            worker.join(timeout=30)
    assert value(samples, "usersvc_worker_reconnects_total", dependency="eventstoredb") >= 2
    # EventStoreDB is down, PostgreSQL is not: the worker keeps its lock, and is not caught up.
    assert value(samples, "usersvc_worker_leader") == 1
    assert value(samples, "usersvc_worker_caught_up") == 0
    assert live.status_code == 200
    assert not worker.is_alive()


def test_a_standby_worker_reports_no_leadership(pg_url: str, schema: str) -> None:
    from worker.runner import _LOCK_NAMESPACE

    port = free_port()
    settings = Settings(
        esdb_connection_string=f"esdb://127.0.0.1:{free_port()}?tls=false",
        database_url=pg_url,
        database_schema=schema,
        worker_name="metrics-standby",
        worker_metrics_port=port,
    )
    stop = threading.Event()
    with psycopg.connect(pg_url, autocommit=True) as holder:
        # The lock the leader would hold, taken by the test first.
        holder.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))",
            (_LOCK_NAMESPACE, f"{schema}:{settings.worker_name}"),
        )
        with logged("worker.runner", "standing by") as standing_by:
            worker = threading.Thread(target=run, args=(settings,), kwargs={"stop": stop})
            worker.start()
            try:
                assert standing_by.wait(30)
                samples = scrape(f"http://127.0.0.1:{port}/metrics")
            finally:
                stop.set()
                worker.join(timeout=30)
    assert value(samples, "usersvc_worker_leader") == 0
    assert "usersvc_worker_lag_events" not in samples

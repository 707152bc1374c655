"""The service's Prometheus metrics and `GET /metrics` (names and labels: docs/operations.md).

Under gunicorn every worker process writes its samples to files in `PROMETHEUS_MULTIPROC_DIR`
(`usersvc serve` makes that folder and sets the variable before any worker starts), and
`/metrics` on any worker adds up all of them. Without that variable (the debug server, tests) the
metrics live in this app's own registry.

`prometheus_client` is imported only when an app is built: it picks its storage from the
environment at import, which must happen after `usersvc serve` has set the variable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from esdbclient import NewEvent, RecordedEvent
from flask import Flask, Response, g, request

from service.commands import StorePort
from service.errors import AppendOutcomeUnknown, EventStoreUnavailable
from service.store_errors import StreamConflict

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION = "usersvc.metrics"
# Seconds: a GET answers in about a millisecond, an append in a few.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# The route label of a request no route matched (any path: unbounded, so never the path itself).
UNMATCHED = "unmatched"


class ServiceMetrics:
    """The service's metrics, in the multi-process files when `MULTIPROC_ENV` is set."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
            multiprocess,
        )

        # `*_created` series double what is exported and say nothing a scrape needs.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        folder = os.environ.get(MULTIPROC_ENV)
        # In multi-process mode the samples go to files; the scrape registry reads all of them.
        own = None if folder else self.registry
        if folder:
            multiprocess.MultiProcessCollector(self.registry, path=folder)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "usersvc_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=own,
        )
        self.latency = Histogram(
            "usersvc_http_request_duration_seconds",
            "Time from a request's arrival in Flask to its response, by method, route and status.",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.appends = Counter(
            "usersvc_eventstore_appends",
            "Appends to EventStoreDB, by outcome: ok, conflict (the stream moved), unknown (failed "
            "after it may have been written), unavailable (not sent), error.",
            ("outcome",),
            registry=own,
        )
        self.append_latency = Histogram(
            "usersvc_eventstore_append_duration_seconds",
            "Time an append to EventStoreDB took, by outcome.",
            ("outcome",),
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.read_waits = Histogram(
            "usersvc_read_wait_seconds",
            "Reads with X-Min-Position: time waited for the worker, by outcome: fresh (no wait), "
            "caught_up (waited, then answered), behind (503 projection_behind).",
            ("outcome",),
            buckets=WAIT_BUCKETS,
            registry=own,
        )

    def request(self, method: str, route: str, status: str, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            # The label sets are few (routes, methods, statuses): look each up once.
            children = self._children[key] = (
                self.requests.labels(*key),
                self.latency.labels(*key),
            )
        children[0].inc()
        children[1].observe(seconds)

    def append(self, outcome: str, seconds: float) -> None:
        self.appends.labels(outcome).inc()
        self.append_latency.labels(outcome).observe(seconds)

    def read_wait(self, outcome: str, seconds: float) -> None:
        self.read_waits.labels(outcome).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MeteredStore:
    """A `StorePort` that times each append and counts its outcome."""

    def __init__(self, store: StorePort, metrics: ServiceMetrics) -> None:
        self.store = store
        self.metrics = metrics

    def read(self, stream: str) -> Sequence[RecordedEvent]:
        return self.store.read(stream)

    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None:
        return self.store.read_from(stream, revision)

    def truncate_before(self, stream: str, revision: int) -> bool:
        return self.store.truncate_before(stream, revision)

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        started = time.perf_counter()
        outcome = "error"
        try:
            position = self.store.append(stream, expected, event)
            outcome = "ok"
            return position
        except StreamConflict:
            outcome = "conflict"
            raise
        except AppendOutcomeUnknown:
            outcome = "unknown"
            raise
        except EventStoreUnavailable:
            outcome = "unavailable"
            raise
        finally:
            self.metrics.append(outcome, time.perf_counter() - started)


def install(app: Flask, metrics: ServiceMetrics) -> None:
    """Time every request, and serve `GET /metrics`."""
    app.extensions[EXTENSION] = metrics

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            rule = request.url_rule
            metrics.request(
                request.method,
                rule.rule if rule is not None else UNMATCHED,
                str(response.status_code),
                time.perf_counter() - started,
            )
        return response

    def _scrape() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", _scrape, methods=["GET"])


def current(app: Flask) -> ServiceMetrics | None:
    found: ServiceMetrics | None = app.extensions.get(EXTENSION)
    return found

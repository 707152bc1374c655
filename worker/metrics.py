"""The worker's Prometheus metrics, served on `WORKER_METRICS_PORT` (`/metrics`, and `/livez`).

What the pipeline did is taken from outside it: `MeasuredProjection` notes the events each batch
applied (and when the batch began), and `WorkerMetrics.committed`, called from the pipeline's
`on_commit` callback once the batch is durable, counts them. The runner reports reconnects and
leadership. How far behind the head of `$all` the worker is, is measured when Prometheus scrapes
(`LagCollector`): one filtered read of `$all` after the checkpoint, at most `LAG_CAP` events.

Names and labels: docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
from esdbclient import EventStoreDBClient

from usersvc.events import SCHEMA_VERSIONS
from usersvc.records import StoredEvent
from worker.pipeline import Committed
from worker.projection import BatchResult, Projection
from worker.subscription import subscription_filter

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

# The lag in events is counted up to this many (a gauge at the cap reads "at least").
LAG_CAP = 10_000
# Distinct event types that get a label of their own when skipped; the rest are "other".
MAX_SKIPPED_TYPES = 50
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 50_000, 100_000)
BATCH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WorkerMetrics:
    """The worker's metrics in a registry of their own."""

    def __init__(self, esdb_connection_string: str, esdb_timeout: float) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        registry = self.registry
        self.projected = Counter(
            "usersvc_worker_events_projected",
            "Events applied to the read model, by event type.",
            ("type",),
            registry=registry,
        )
        self.skipped = Counter(
            "usersvc_worker_events_skipped",
            "Events passed over by design (not a user's event type), by type (at most "
            f"{MAX_SKIPPED_TYPES} types, then 'other').",
            ("type",),
            registry=registry,
        )
        self.batch_size = Histogram(
            "usersvc_worker_batch_size",
            "Events received per committed batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "usersvc_worker_batch_duration_seconds",
            "Time from a batch's first write to its commit.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.checkpoint = Gauge(
            "usersvc_worker_checkpoint_position",
            "The commit position in $all the read model has applied (its stored checkpoint).",
            registry=registry,
        )
        self.caught_up = Gauge(
            "usersvc_worker_caught_up",
            "1 once the subscription has delivered everything recorded, 0 before and after a "
            "reconnect.",
            registry=registry,
        )
        self.reconnects = Counter(
            "usersvc_worker_reconnects",
            "Lost connections retried, by dependency: eventstoredb, postgresql.",
            ("dependency",),
            registry=registry,
        )
        self.leader = Gauge(
            "usersvc_worker_leader",
            "1 while this worker holds the lock (and projects, or retries EventStoreDB), 0 while "
            "it stands by or connects to PostgreSQL.",
            registry=registry,
        )
        self.parked_events = Counter(
            "usersvc_worker_events_parked",
            "Events set aside behind a parked stream (the refused events included).",
            registry=registry,
        )
        self.parked_streams = Gauge(
            "usersvc_worker_parked_streams",
            "Streams parked at an event the projection cannot apply (see `usersvc parked`), as "
            "of the last batch.",
            registry=registry,
        )
        self._skipped_types: set[str] = set()
        # What the lag is measured from: the checkpoint this process committed, while it leads.
        self.position: int | None = None
        self.leads = False
        self.lag = LagCollector(esdb_connection_string, esdb_timeout, self)
        registry.register(self.lag)

    def committed(self, committed: Committed, applied: Sequence[StoredEvent]) -> None:
        """A batch is durable: `applied` are the events the projection was given for it."""
        for event in applied:
            if event.type in SCHEMA_VERSIONS:
                self.projected.labels(event.type).inc()
            else:
                self.skipped.labels(self._skipped_label(event.type)).inc()
        if committed.events:
            self.batch_size.observe(committed.events)
        if committed.parked:
            self.parked_events.inc(committed.parked)
        if committed.parked_streams is not None:
            self.parked_streams.set(committed.parked_streams)
        if committed.position is not None:
            self.position = committed.position
            self.checkpoint.set(committed.position)
        if committed.caught_up:
            self.caught_up.set(1)

    def batch_took(self, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def reconnecting(self, dependency: str) -> None:
        self.reconnects.labels(dependency).inc()
        self.caught_up.set(0)
        if dependency == "postgresql":
            self.leading(False)  # the lock went with the connection

    def leading(self, leads: bool, checkpoint: int | None = None) -> None:
        """Whether this worker projects; when it starts to, the checkpoint it starts from."""
        self.leads = leads
        self.leader.set(1 if leads else 0)
        if leads and checkpoint is not None:
            self.position = checkpoint
            self.checkpoint.set(checkpoint)

    def _skipped_label(self, type_: str) -> str:
        if type_ in self._skipped_types:
            return type_
        if len(self._skipped_types) < MAX_SKIPPED_TYPES:
            self._skipped_types.add(type_)
            return type_
        return "other"


class MeasuredProjection(Projection):
    """`Projection` that remembers, for the metrics, what the current batch applied and since
    when; the pipeline's commit loop is unchanged."""

    def __init__(self, schema: str, checkpoint_name: str) -> None:
        super().__init__(schema, checkpoint_name)
        self._applied: Sequence[StoredEvent] = ()
        self._started: float | None = None

    def apply(self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> BatchResult:
        if self._started is None:
            self._started = time.perf_counter()
        result = super().apply(conn, events)
        # Set only once it applied: after a refused batch the pipeline applies the part before
        # the bad event, and that part is what commits.
        self._applied = events
        return result

    def take(self) -> tuple[Sequence[StoredEvent], float | None]:
        """The events of the batch just committed and its duration (None if nothing began)."""
        applied, started = self._applied, self._started
        self._applied, self._started = (), None
        return applied, None if started is None else time.perf_counter() - started


class LagCollector:
    """Head position, lag in events and seconds, measured at each scrape while leading."""

    def __init__(self, connection_string: str, timeout: float, metrics: WorkerMetrics) -> None:
        self._connection_string = connection_string
        self._timeout = timeout
        self._metrics = metrics
        self._client: EventStoreDBClient | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        if not self._metrics.leads:
            return
        try:
            with self._lock:
                head, count, oldest = self._measure(self._metrics.position)
        except Exception as exc:  # a scrape must answer even while EventStoreDB does not
            log.debug("could not measure the lag: %s", exc)
            self._close()
            return
        yield GaugeMetricFamily(
            "usersvc_worker_head_position",
            "The commit position of the newest user event in $all.",
            value=head,
        )
        yield GaugeMetricFamily(
            "usersvc_worker_lag_events",
            f"User events in $all after the checkpoint (counted up to {LAG_CAP}).",
            value=count,
        )
        seconds = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        yield GaugeMetricFamily(
            "usersvc_worker_lag_seconds",
            "How long the oldest event not yet applied has waited (0 when caught up).",
            value=max(seconds, 0.0),
        )

    def _measure(self, after: int | None) -> tuple[int, int, datetime | None]:
        if self._client is None:
            self._client = EventStoreDBClient(self._connection_string)
        client = self._client
        head = int(client.get_commit_position(timeout=self._timeout, **subscription_filter()))
        count = 0
        oldest: datetime | None = None
        if after is None or head > after:
            for recorded in client.read_all(
                commit_position=after,
                limit=LAG_CAP + 1,
                timeout=self._timeout,
                **subscription_filter(),
            ):
                position = recorded.commit_position
                if position is None or (after is not None and position <= after):
                    continue
                if oldest is None:
                    oldest = recorded.recorded_at
                count += 1
                if count >= LAG_CAP:
                    break
        return head, count, oldest

    def _close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:
                    log.debug("closing the lag client failed", exc_info=True)
                self._client = None

    def close(self) -> None:
        self._close()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """`GET /metrics` and `GET /livez` on a thread of its own."""

    def __init__(self, metrics: WorkerMetrics, host: str, port: int) -> None:
        from prometheus_client import make_wsgi_app

        scrape = make_wsgi_app(metrics.registry)

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                body: Iterable[bytes] = scrape(environ, start_response)
                return body
            if path == "/livez":
                start_response("200 OK", [("Content-Type", "application/json")])
                return [b'{"status":"ok"}']
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics or /livez\n"]

        self._metrics = metrics
        self._server = make_server(host, port, app, _Server, _QuietHandler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._metrics.lag.close()

"""The worker process's composition root: clients, signals, reconnects and the exit code.

Exit codes: 0 after a requested stop (SIGTERM, SIGINT or the `stop` event), 1 when an event of a
known type cannot be projected and cannot be parked (parking off, or too many streams parked
already: the log names its position), when the stored checkpoint is ahead of the head of `$all`
(checked at every (re)connection: the store lost history), or on an unexpected error. An event
that can be parked is retried with the same backoff first (`worker.parking`). Lost
connections to EventStoreDB or PostgreSQL, and subscriptions that end or fail, are retried with
bounded exponential backoff, each attempt logged, resuming from the stored checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import psycopg
from esdbclient import EventStoreDBClient
from esdbclient.exceptions import EventStoreDBClientException

from usersvc.settings import Settings
from worker import subscription
from worker.backoff import Backoff
from worker.metrics import MeasuredProjection, MetricsServer, WorkerMetrics
from worker.parking import Parking, ParkingPolicy
from worker.pipeline import Committed, project
from worker.projection import ProjectionError
from worker.reader import SourceFailed

log = logging.getLogger(__name__)

PG_CONNECT_TIMEOUT = 5
# Seconds between attempts of a standby worker to take over the advisory lock.
STANDBY_POLL = 1.0
# Mixed with the schema and worker name into the advisory lock key ("uswk").
_LOCK_NAMESPACE = 0x7573776B
_PG_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
_ESDB_ERRORS = (EventStoreDBClientException, SourceFailed)
# Seconds between the progress lines of a projecting worker.
PROGRESS_EVERY = 10.0


def application_name(settings: Settings) -> str:
    """The `application_name` of the worker's PostgreSQL connection (see pg_stat_activity)."""
    return f"usersvc-worker {settings.database_schema}:{settings.worker_name}"[:63]


def run(settings: Settings, *, stop: threading.Event | None = None) -> int:
    """Run the worker until `stop` is set or a signal arrives; return the exit code."""
    stop = stop or threading.Event()
    metrics: WorkerMetrics | None = None
    server: MetricsServer | None = None
    if settings.worker_metrics_port is not None:
        metrics = WorkerMetrics(settings.esdb_connection_string, settings.esdb_timeout)
        try:
            server = MetricsServer(metrics, settings.http_host, settings.worker_metrics_port)
        except OSError as exc:
            log.critical(
                "cannot serve metrics on %s:%s: %s",
                settings.http_host,
                settings.worker_metrics_port,
                exc,
            )
            return 1
        log.info(
            "metrics on http://%s:%d/metrics",
            settings.http_host,
            server.port,
            extra={"metrics_port": server.port},
        )
    restore = _install_signal_handlers(stop)
    try:
        return _Worker(settings, stop, metrics).run()
    finally:
        restore()
        if server is not None:
            server.close()


def parking_of(settings: Settings) -> Parking | None:
    """The worker's parking of poison events, or None when `worker_park_after_attempts` is 0."""
    if settings.worker_park_after_attempts == 0:
        return None
    policy = ParkingPolicy(
        attempts=settings.worker_park_after_attempts,
        max_streams=settings.worker_max_parked_streams,
    )
    return Parking(settings.database_schema, settings.worker_name, policy)


class _Worker:
    def __init__(
        self, settings: Settings, stop: threading.Event, metrics: WorkerMetrics | None = None
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.metrics = metrics
        self.backoff = Backoff(settings.worker_backoff_initial, settings.worker_backoff_max)
        self.projection = MeasuredProjection(settings.database_schema, settings.worker_name)
        self.parking = parking_of(settings)
        self.progress = _ProgressLog()
        self.conn: psycopg.Connection[Any] | None = None
        self.client: EventStoreDBClient | None = None
        self.standing_by = False

    def run(self) -> int:
        database_url = self.settings.require_database_url()
        log.info(
            "worker %r projecting into schema %s",
            self.settings.worker_name,
            self.settings.database_schema,
        )
        try:
            while not self.stop.is_set():
                try:
                    conn = self._connection(database_url)
                    if not self._lead(conn):
                        continue
                    self._project(conn)
                except subscription.HistoryLost as exc:
                    log.critical("stopping: %s", exc)
                    return 1
                except ProjectionError as exc:
                    if self.parking is None or not self.parking.retrying(exc):
                        log.critical("stopping: %s", exc)
                        return 1
                    # The refusal was logged with its attempt; try again from the checkpoint.
                    self.stop.wait(self.backoff.next_delay())
                except _PG_ERRORS as exc:
                    self._close_connection()
                    self._wait("PostgreSQL", exc)
                except _ESDB_ERRORS as exc:
                    self._close_client()
                    self._wait("EventStoreDB", exc)
            return 0
        except Exception:
            log.exception("worker failed")
            return 1
        finally:
            self._close_connection()
            self._close_client()

    def _wait(self, what: str, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.reconnecting(what.lower())
        delay = self.backoff.next_delay()
        log.warning(
            "%s unavailable (attempt %d): %s; retrying in %.2f s from the stored checkpoint",
            what,
            self.backoff.attempt,
            _describe(exc),
            delay,
            extra={"dependency": what, "attempt": self.backoff.attempt, "retry_in": delay},
        )
        self.stop.wait(delay)

    def _lead(self, conn: psycopg.Connection[Any]) -> bool:
        """Take the session advisory lock of this schema and worker name, so that one worker at a
        time projects (others stand by). It is released when the connection ends."""
        key = f"{self.settings.database_schema}:{self.settings.worker_name}"
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, key)
        ).fetchone()
        if row is not None and row[0]:
            if self.standing_by:
                log.info("took over the lock for %s", key)
                self.standing_by = False
            return True
        if not self.standing_by:
            if self.metrics is not None:
                self.metrics.leading(False)
            log.info("another worker holds the lock for %s; standing by", key)
            self.standing_by = True
        self.stop.wait(STANDBY_POLL)
        return False

    def _connection(self, database_url: str) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                database_url,
                autocommit=True,
                connect_timeout=PG_CONNECT_TIMEOUT,
                application_name=application_name(self.settings),
            )
            log.info("connected to PostgreSQL")
        return self.conn

    def _project(self, conn: psycopg.Connection[Any]) -> None:
        """One session: subscribe after the stored checkpoint and project until `stop` is set."""
        position = self.projection.checkpoint(conn)
        self.projection.take()  # forget a batch that a lost connection never committed
        if self.metrics is not None:
            self.metrics.leading(True, position)
        log.info(
            "subscribing to $all from %s",
            "the start" if position is None else f"after commit position {position}",
            extra={"checkpoint": position},
        )
        if self.client is None:
            self.client = EventStoreDBClient(self.settings.esdb_connection_string)
            log.debug("created the EventStoreDB client")
        subscription.check_history(self.client, position, self.settings.esdb_timeout)
        batch_size = self.settings.worker_batch_size
        reader = subscription.subscribe(self.client, position, capacity=batch_size * 4)
        try:
            position = project(
                conn,
                reader,
                self.projection,
                batch_size=batch_size,
                batch_wait=self.settings.worker_batch_wait,
                stop=self.stop,
                on_commit=self._committed,
                parking=self.parking,
            )
        finally:
            reader.close()
        log.info("stopped at commit position %s", position)

    def _committed(self, committed: Committed) -> None:
        applied, seconds = self.projection.take()
        if self.metrics is not None:
            self.metrics.committed(committed, applied)
            if seconds is not None:
                self.metrics.batch_took(seconds)
        if committed.events or committed.position != self.progress.position:
            self.backoff.reset()
        if committed.caught_up:
            log.info(
                "caught up at commit position %s",
                committed.position,
                extra={"checkpoint": committed.position},
            )
        self.progress.add(committed)

    def _close_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                log.debug("closing the PostgreSQL connection failed", exc_info=True)
            self.conn = None

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                log.debug("closing the EventStoreDB client failed", exc_info=True)
            self.client = None


class _ProgressLog:
    """Counts what the worker projected and logs it every PROGRESS_EVERY seconds."""

    def __init__(self) -> None:
        self.applied = 0
        self.skipped = 0
        self.position: int | None = None
        self._last_line = time.monotonic()

    def add(self, committed: Committed) -> None:
        self.applied += committed.applied
        self.skipped += committed.skipped
        self.position = committed.position
        now = time.monotonic()
        if now - self._last_line >= PROGRESS_EVERY:
            self._last_line = now
            log.info(
                "projected %d events (%d skipped), checkpoint %s",
                self.applied,
                self.skipped,
                self.position,
                extra={
                    "applied": self.applied,
                    "skipped": self.skipped,
                    "checkpoint": self.position,
                },
            )


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    text = f"{type(exc).__name__}: {exc}".strip()
    return f"{text} (caused by {type(cause).__name__}: {cause})" if cause is not None else text


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop` (the batch in flight is committed, then the worker exits 0).
    Only possible in the main thread; elsewhere the caller's `stop` is the only way."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping after the batch in flight", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore

"""Read-your-writes across processes: a read with `X-Min-Position: P` (a commit position a write
answered with) waits until the worker's checkpoint has reached P, then reads the read model.

Each service process keeps one PostgreSQL connection that LISTENs to the worker's checkpoint
notifications (`usersvc.readmodel.NOTIFY_CHANNEL`), opened at the first such read: the checkpoint
is read once after LISTEN, then every commit of the worker pushes its new position. A waiting
request blocks on a condition that the listener thread signals; nothing polls. The worker commits
the rows with the checkpoint and notifies on commit, so once the position is known to be reached,
any connection of the pool sees the rows.

Waiting is bounded (`MIN_POSITION_WAIT`, default 5 s); a checkpoint still behind then is
`503 projection_behind` with `Retry-After` and the checkpoint reached. A position beyond the
newest user event in EventStoreDB was never answered by a write: 422 at once, no wait.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import nullcontext
from typing import Any, Protocol

import psycopg
from flask import current_app, request

from service import context
from service.errors import ApiError, DatabaseUnavailable, ProjectionBehind, ValidationFailed
from service.metrics import current
from service.query_deadline import QueryDeadline
from service.users import UNAVAILABLE_MESSAGE
from usersvc.readmodel import ReadModel, notify_prefix

log = logging.getLogger(__name__)

HEADER = "X-Min-Position"
EXTENSION = "usersvc.freshness"
CONNECT_TIMEOUT = 2
# Seconds between the listener's looks at `close()`; notifications wake it at once regardless.
STOP_CHECK = 5.0
_MAX_POSITION = 2**63 - 1


class CheckpointSource(Protocol):
    def wait_for(self, position: int, timeout: float) -> int | None:
        """The checkpoint once it is ≥ `position`, else what it was when `timeout` passed
        (None before the worker's first commit). Raises `DatabaseUnavailable`."""
        ...

    def close(self) -> None: ...


class CheckpointListener:
    """The worker's checkpoint as PostgreSQL notifies it, on one connection of its own."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        checkpoint_name: str,
        *,
        connect_timeout: int = CONNECT_TIMEOUT,
        deadline: QueryDeadline | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._deadline = deadline
        self._name = checkpoint_name
        self._prefix = notify_prefix(schema, checkpoint_name)
        self._model = ReadModel(schema)
        self._changed = threading.Condition()
        self._start_lock = threading.Lock()
        self._position: int | None = None
        self._listening = False
        self._closed = False

    def wait_for(self, position: int, timeout: float) -> int | None:
        with self._changed:
            if self._listening and self._reached(position):
                return self._position
        self._start()
        with self._changed:
            self._changed.wait_for(lambda: self._reached(position) or not self._listening, timeout)
            if not self._listening and not self._reached(position):
                raise DatabaseUnavailable("lost the connection that follows the worker")
            return self._position

    def close(self) -> None:
        self._closed = True

    def _reached(self, position: int) -> bool:
        return self._position is not None and self._position >= position

    def _start(self) -> None:
        with self._start_lock:
            if self._listening:
                return
            try:
                conn = psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=self._connect_timeout,
                    application_name="usersvc-service checkpoint listener",
                )
            except psycopg.Error as exc:
                raise DatabaseUnavailable(UNAVAILABLE_MESSAGE) from exc
            try:
                with self._deadline.guard(conn) if self._deadline else nullcontext():
                    conn.execute(self._model.listen)
                    row = conn.execute(self._model.select_checkpoint, (self._name,)).fetchone()
            except psycopg.Error as exc:
                conn.close()
                raise DatabaseUnavailable(UNAVAILABLE_MESSAGE) from exc
            with self._changed:
                self._position = None if row is None else int(row[0])
                self._listening = True
            threading.Thread(
                target=self._listen, args=(conn,), name="checkpoint-listener", daemon=True
            ).start()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        try:
            while not self._closed:
                for note in conn.notifies(timeout=STOP_CHECK):
                    if note.payload.startswith(self._prefix):
                        self._advance(note.payload.removeprefix(self._prefix))
        except psycopg.Error as exc:
            log.warning("stopped following the worker's checkpoint: %s", exc)
        finally:
            with self._changed:
                self._listening = False
                self._changed.notify_all()
            conn.close()

    def _advance(self, text: str) -> None:
        if not text.isdigit():
            return
        position = int(text)
        with self._changed:
            if self._position is None or position > self._position:
                self._position = position
                self._changed.notify_all()


class StoredCheckpoint:
    """The checkpoint read once, without waiting: for apps built on other read models (tests)."""

    def __init__(self, read: Any, checkpoint_name: str) -> None:
        self._read = read
        self._name = checkpoint_name

    def wait_for(self, position: int, timeout: float) -> int | None:
        checkpoint = self._read(self._name)
        return None if checkpoint is None else int(checkpoint.commit_position)

    def close(self) -> None:
        pass


def min_position() -> int | None:
    """The request's `X-Min-Position`, or None; 422 when it is not a commit position."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_POSITION:
        raise ValidationFailed(
            f"{HEADER} must be a commit position",
            [{"field": HEADER, "message": "a whole number ≥ 0 that a write answered with"}],
        )
    return int(text)


def _written(position: int) -> None:
    """A position past the newest user event in EventStoreDB was answered by no write: waiting
    for it would be in vain (422). Unchecked while EventStoreDB does not answer."""
    try:
        head = context.event_store().head_position()
    except ApiError:
        return
    if position > head:
        raise ValidationFailed(
            f"no write has reached commit position {position} yet (the newest is {head})",
            [{"field": HEADER, "message": "a commit position that a write answered with"}],
        )


def await_position() -> None:
    """Return once the read model has applied the request's `X-Min-Position` (at once without
    one); raise `ProjectionBehind` when the bounded wait ends first."""
    position = min_position()
    if position is None:
        return
    source: CheckpointSource = current_app.extensions[EXTENSION]
    started = time.perf_counter()
    checkpoint = source.wait_for(position, 0)
    outcome = "fresh"
    if checkpoint is None or checkpoint < position:
        _written(position)
        timeout = current_app.config["MIN_POSITION_WAIT"]
        log.debug(
            "waiting up to %.1f s for the worker to apply commit position %d (it is at %s)",
            timeout,
            position,
            checkpoint,
            extra={"min_position": position, "checkpoint": checkpoint},
        )
        checkpoint = source.wait_for(position, timeout)
        outcome = "caught_up" if checkpoint is not None and checkpoint >= position else "behind"
    metrics = current(current_app)
    if metrics is not None:
        metrics.read_wait(outcome, time.perf_counter() - started)
    if outcome == "behind":
        reached = "nothing yet" if checkpoint is None else f"up to {checkpoint}"
        raise ProjectionBehind(
            f"the read model has not applied commit position {position} yet (it has applied "
            f"{reached}); retry shortly",
            position,
            checkpoint,
        )

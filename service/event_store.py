"""The EventStoreDB adapter: reads and appends a user's stream, truncates it, reads the head.

esdbclient's exceptions are translated here and nowhere else: an expected revision that no longer
holds becomes `StreamConflict` (the commands decide what it means for the client), an unreachable
or slow server `EventStoreUnavailable`.

esdbclient retries a failed gRPC call once, so each call gets half the timeout and the whole stays
within it (twice it only if esdbclient also reconnects between attempts: a refused connection,
then a hang).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from esdbclient import EventStoreDBClient, NewEvent, RecordedEvent, StreamState
from esdbclient.exceptions import (
    AbortedByServer,
    DeadlineExceeded,
    DiscoveryFailed,
    EventStoreDBClientException,
    FailedPrecondition,
    GrpcError,
    NodeIsNotLeader,
    NotFound,
    ServiceUnavailable,
    StreamIsDeleted,
    WrongCurrentVersion,
)

from service.errors import EventStoreUnavailable
from usersvc.events import STREAM_PREFIX

log = logging.getLogger(__name__)

# The server is down, unreachable, overloaded or too slow: worth retrying later (503).
_UNAVAILABLE: tuple[type[Exception], ...] = (
    ServiceUnavailable,
    DeadlineExceeded,
    DiscoveryFailed,
    NodeIsNotLeader,
    AbortedByServer,
)
# Status names that mark a generic gRPC failure as transient.
_TRANSIENT_MARKERS = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "Connection refused",
)

# Seconds at most that `/health` waits for the head of `$all` (less if ESDB_TIMEOUT is smaller), so
# a probe with a short timeout of its own gets an answer while EventStoreDB hangs.
HEALTH_TIMEOUT = 2.0

# `$tb` is moved with an expected metadata revision; this many tries while others move it too.
TRUNCATE_ATTEMPTS = 5


class StreamConflict(Exception):
    """The stream is not at the expected revision (or was deleted for good) when appending."""


class ClientPort(Protocol):
    """The part of `EventStoreDBClient` the service uses (a fake in unit tests)."""

    def append_to_stream(
        self,
        stream_name: str,
        *,
        current_version: int | StreamState,
        events: NewEvent | Sequence[NewEvent],
        timeout: float | None = None,
    ) -> int: ...

    def get_commit_position(
        self,
        *,
        filter_exclude: Sequence[str] = (),
        filter_include: Sequence[str] = (),
        filter_by_stream_name: bool = False,
        timeout: float | None = None,
    ) -> int: ...

    def get_stream(
        self,
        stream_name: str,
        *,
        stream_position: int | None = None,
        timeout: float | None = None,
    ) -> Sequence[RecordedEvent]: ...

    def get_stream_metadata(
        self, stream_name: str, *, timeout: float | None = None
    ) -> tuple[dict[str, Any], int | Literal[StreamState.NO_STREAM]]: ...

    def set_stream_metadata(
        self,
        stream_name: str,
        *,
        metadata: dict[str, Any],
        current_version: int | StreamState = StreamState.ANY,
        timeout: float | None = None,
    ) -> None: ...

    def close(self) -> None: ...


def translate(exc: EventStoreDBClientException) -> Exception:
    """The service error for an esdbclient exception; unknown ones are returned unchanged (500)."""
    if isinstance(exc, WrongCurrentVersion | StreamIsDeleted) or (
        isinstance(exc, FailedPrecondition) and "is deleted" in str(exc)
    ):
        return StreamConflict(str(exc))
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, GrpcError) and any(m in str(exc) for m in _TRANSIENT_MARKERS)
    ):
        return EventStoreUnavailable(f"EventStoreDB is unavailable: {type(exc).__name__}: {exc}")
    return exc


class EventStore:
    """Wraps one lazily created client, so the service starts even while EventStoreDB is down."""

    def __init__(
        self,
        connection_string: str,
        timeout: float,
        *,
        client_factory: Callable[[str], ClientPort] = EventStoreDBClient,
    ) -> None:
        self.connection_string = connection_string
        self.timeout = timeout
        self._client_factory = client_factory
        self._client: ClientPort | None = None
        self._lock = threading.Lock()

    def _get_client(self) -> ClientPort:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._client_factory(self.connection_string)
                except EventStoreDBClientException as exc:
                    raise translate(exc) from exc
            return self._client

    def read(self, stream: str) -> Sequence[RecordedEvent]:
        """Every readable event of `stream` in order (none before its `$tb`); [] when there is
        no stream or it was deleted for good."""
        client = self._get_client()
        try:
            return client.get_stream(stream, timeout=self.timeout / 2)
        except (NotFound, StreamIsDeleted):
            return []
        except EventStoreDBClientException as exc:
            raise translate(exc) from exc

    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None:
        """The readable events of `stream` from `revision` on (none when it has no more); None
        when the stream no longer exists (deleted outside usersvc)."""
        client = self._get_client()
        try:
            return client.get_stream(stream, stream_position=revision, timeout=self.timeout / 2)
        except (NotFound, StreamIsDeleted):
            return None
        except EventStoreDBClientException as exc:
            raise translate(exc) from exc

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        """Append `event` expecting the stream at revision `expected` (None: no stream yet);
        return its commit position. Raises `StreamConflict` when the stream is elsewhere."""
        client = self._get_client()
        try:
            position = client.append_to_stream(
                stream,
                current_version=StreamState.NO_STREAM if expected is None else expected,
                events=event,
                timeout=self.timeout / 2,
            )
        except EventStoreDBClientException as exc:
            raise translate(exc) from exc
        return int(position)

    def truncate_before(self, stream: str, revision: int) -> bool:
        """Make `revision` the stream's first readable event (metadata `$tb`), keeping the other
        metadata; True if this call moved it, False if it already was there or later.

        `$tb` only ever moves forward: it is written expecting the metadata revision it was read
        at, so a slower caller with an older revision can never make truncated events readable.
        """
        client = self._get_client()
        for _ in range(TRUNCATE_ATTEMPTS):
            try:
                metadata, version = client.get_stream_metadata(stream, timeout=self.timeout / 2)
                current = metadata.get("$tb")
                if isinstance(current, int) and current >= revision:
                    return False
                client.set_stream_metadata(
                    stream,
                    metadata={**metadata, "$tb": revision},
                    current_version=version,
                    timeout=self.timeout / 2,
                )
                return True
            except WrongCurrentVersion:
                continue
            except StreamIsDeleted:
                return False  # deleted for good: nothing of it is readable any more
            except EventStoreDBClientException as exc:
                raise translate(exc) from exc
        raise EventStoreUnavailable(f"the metadata of {stream} kept changing; try again")

    def head_position(self) -> int:
        """Commit position of the newest event of this service (0 when there is none).

        Within `HEALTH_TIMEOUT` (each of esdbclient's two attempts gets half).
        """
        try:
            return int(
                self._get_client().get_commit_position(
                    filter_include=[STREAM_PREFIX + ".*"],
                    filter_by_stream_name=True,
                    timeout=min(self.timeout, HEALTH_TIMEOUT) / 2,
                )
            )
        except EventStoreDBClientException as exc:
            translated = translate(exc)
            if isinstance(translated, EventStoreUnavailable):
                raise translated from exc
            raise EventStoreUnavailable(f"EventStoreDB failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

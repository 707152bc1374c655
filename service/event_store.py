"""The EventStoreDB adapter: reads and appends a user's stream, truncates it, reads the head.

esdbclient's failures are translated here, by `service.store_errors`, and nowhere else: an
expected revision that no longer holds becomes `StreamConflict` (the commands decide what it
means for the client), any other failure a 503 (`append_outcome_unknown` for an append).

esdbclient retries a failed gRPC call once, so each call gets half the timeout and the whole stays
within it (twice it only if esdbclient also reconnects between attempts: a refused connection,
then a hang).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn, Protocol

from esdbclient import EventStoreDBClient, NewEvent, RecordedEvent, StreamState
from esdbclient.exceptions import NotFound, StreamIsDeleted, WrongCurrentVersion

from service.errors import EventStoreUnavailable
from service.store_errors import CLIENT_FAILURES, UNAVAILABLE_MESSAGE, translate
from usersvc.events import STREAM_PREFIX

log = logging.getLogger(__name__)

# Seconds at most that `/health` waits for the head of `$all` (less if ESDB_TIMEOUT is smaller), so
# a probe with a short timeout of its own gets an answer while EventStoreDB hangs.
HEALTH_TIMEOUT = 2.0

# `$tb` is moved with an expected metadata revision; this many tries while others move it too.
TRUNCATE_ATTEMPTS = 5


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
                except CLIENT_FAILURES as exc:
                    _failed(exc)  # nothing was sent: unavailable, even for an append
            return self._client

    def read(self, stream: str) -> Sequence[RecordedEvent]:
        """Every readable event of `stream` in order (none before its `$tb`); [] when there is
        no stream or it was deleted for good."""
        client = self._get_client()
        try:
            return client.get_stream(stream, timeout=self.timeout / 2)
        except (NotFound, StreamIsDeleted):
            return []
        except CLIENT_FAILURES as exc:
            _failed(exc)

    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None:
        """The readable events of `stream` from `revision` on (none when it has no more); None
        when the stream no longer exists (deleted outside usersvc)."""
        client = self._get_client()
        try:
            return client.get_stream(stream, stream_position=revision, timeout=self.timeout / 2)
        except (NotFound, StreamIsDeleted):
            return None
        except CLIENT_FAILURES as exc:
            _failed(exc)

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        """Append `event` expecting the stream at revision `expected` (None: no stream yet);
        return its commit position. Raises `StreamConflict` when the stream is elsewhere, and
        `AppendOutcomeUnknown` when the call failed after it may have been written."""
        client = self._get_client()
        try:
            position = client.append_to_stream(
                stream,
                current_version=StreamState.NO_STREAM if expected is None else expected,
                events=event,
                timeout=self.timeout / 2,
            )
        except CLIENT_FAILURES as exc:
            _failed(exc, appending=True)
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
            except CLIENT_FAILURES as exc:
                _failed(exc)
        raise EventStoreUnavailable(f"the metadata of {stream} kept changing; try again")

    def head_position(self) -> int:
        """Commit position of the newest event of this service (0 when there is none).

        Within `HEALTH_TIMEOUT` (each of esdbclient's two attempts gets half).
        """
        return self._newest(filter_include=[STREAM_PREFIX + ".*"], filter_by_stream_name=True)

    def all_position(self) -> int:
        """Commit position of the newest event in `$all`, whatever its stream or type (0 when
        there is none): no checkpoint of a reader of `$all` can be past it. Within
        `HEALTH_TIMEOUT`."""
        return self._newest(filter_exclude=[])

    def _newest(self, **filters: Any) -> int:
        try:
            return int(
                self._get_client().get_commit_position(
                    **filters, timeout=min(self.timeout, HEALTH_TIMEOUT) / 2
                )
            )
        except CLIENT_FAILURES as exc:
            # Whatever went wrong, the probe's answer is the same: no head to compare with.
            raise EventStoreUnavailable(UNAVAILABLE_MESSAGE) from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _failed(exc: Exception, *, appending: bool = False) -> NoReturn:
    """Raise what `exc`, raised by a call of the client, means for the request."""
    translated = translate(exc, appending=appending)
    if translated is exc:
        raise exc
    raise translated from exc

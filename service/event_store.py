"""The EventStoreDB adapter: appends `user-created` and reads the head of `$all`.

esdbclient's exceptions are translated here and nowhere else: a taken username becomes
`UsernameTaken`, an unreachable or slow server `EventStoreUnavailable`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from esdbclient import EventStoreDBClient, NewEvent, RecordedEvent, StreamState
from esdbclient.exceptions import (
    AbortedByServer,
    DeadlineExceeded,
    DiscoveryFailed,
    EventStoreDBClientException,
    FailedPrecondition,
    GrpcError,
    NodeIsNotLeader,
    ServiceUnavailable,
    StreamIsDeleted,
    WrongCurrentVersion,
)

from service.errors import EventStoreUnavailable, UsernameTaken
from usersvc.events import (
    STREAM_PREFIX,
    USER_CREATED,
    UserCreated,
    encode_metadata,
    encode_user_created,
    stream_name,
)

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

_EVENT_ID_NAMESPACE = uuid.UUID("5b0c3a52-6f4e-4f38-9d4e-2f0c6f1a7e10")


@dataclass(frozen=True)
class Appended:
    commit_position: int
    stream_revision: int = 0


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
        self, stream_name: str, *, limit: int = ..., timeout: float | None = None
    ) -> Sequence[RecordedEvent]: ...

    def close(self) -> None: ...


def translate(exc: EventStoreDBClientException, username: str | None = None) -> Exception:
    """The service error for an esdbclient exception; unknown ones are returned unchanged (500)."""
    if isinstance(exc, WrongCurrentVersion | StreamIsDeleted) or (
        isinstance(exc, FailedPrecondition) and "is deleted" in str(exc)
    ):
        return UsernameTaken(f"username {username!r} is taken")
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, GrpcError) and any(m in str(exc) for m in _TRANSIENT_MARKERS)
    ):
        return EventStoreUnavailable(f"EventStoreDB is unavailable: {type(exc).__name__}: {exc}")
    return exc


def event_id(user: UserCreated, request_id: str) -> uuid.UUID:
    """A stable event id for a client's request: its retries are recognised as the same write."""
    return uuid.uuid5(_EVENT_ID_NAMESPACE, "\n".join((request_id, user.username, user.full_name)))


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

    def create_user(
        self, user: UserCreated, correlation_id: str, *, idempotent: bool = False
    ) -> Appended:
        """Append the event expecting no stream: exactly one `user-created` per username.

        With `idempotent` (the client sent `X-Request-ID`), the event id is derived from the
        request id, username and full name, so the same request sent again answers 201 again.

        esdbclient retries a failed gRPC call once, so each attempt gets half the timeout and the
        whole stays within it (twice it only if esdbclient also reconnects between attempts: a
        refused connection, then a hang). A timed-out attempt may still have been written: when
        the retry then finds the stream, its first event is ours (same id) and the append
        succeeded.
        """
        event = NewEvent(
            type=USER_CREATED,
            data=encode_user_created(user),
            metadata=encode_metadata(correlation_id=correlation_id),
            content_type="application/json",
            id=event_id(user, correlation_id) if idempotent else uuid.uuid4(),
        )
        stream = stream_name(user.username)
        client = self._get_client()
        try:
            position = client.append_to_stream(
                stream,
                current_version=StreamState.NO_STREAM,
                events=event,
                timeout=self.timeout / 2,
            )
        except WrongCurrentVersion as exc:
            ours = self._recorded_if_ours(client, stream, event.id)
            if ours is None:
                raise translate(exc, user.username) from exc
            position = ours
        except EventStoreDBClientException as exc:
            raise translate(exc, user.username) from exc
        # Expecting no stream, the one event is always revision 0 of its stream.
        return Appended(commit_position=int(position), stream_revision=0)

    def _recorded_if_ours(self, client: ClientPort, stream: str, event_id: uuid.UUID) -> int | None:
        """Commit position of the stream's first event if it is the one we sent, else None."""
        try:
            first = client.get_stream(stream, limit=1, timeout=self.timeout / 2)
        except EventStoreDBClientException:
            return None
        if first and first[0].id == event_id and first[0].commit_position is not None:
            log.info("append of %s was written by a timed-out attempt; answering 201", stream)
            return first[0].commit_position
        return None

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

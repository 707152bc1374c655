"""The EventStoreDB adapter: appends `user-created` and reads the head of `$all`.

esdbclient's exceptions are translated here and nowhere else: a taken username becomes
`UsernameTaken`, an unreachable or slow server `EventStoreUnavailable`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import (
    DeadlineExceeded,
    DiscoveryFailed,
    EventStoreDBClientException,
    FailedPrecondition,
    GrpcError,
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

_UNAVAILABLE = (ServiceUnavailable, DeadlineExceeded, DiscoveryFailed)


@dataclass(frozen=True)
class Appended:
    commit_position: int


class EventStore:
    """Wraps one lazily created client, so the service starts even while EventStoreDB is down."""

    def __init__(self, connection_string: str, timeout: float) -> None:
        self.connection_string = connection_string
        self.timeout = timeout
        self._client: EventStoreDBClient | None = None
        self._lock = threading.Lock()

    def _get_client(self) -> EventStoreDBClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = EventStoreDBClient(self.connection_string)
                except _UNAVAILABLE as exc:
                    raise EventStoreUnavailable(f"EventStoreDB is unreachable: {exc}") from exc
            return self._client

    def create_user(self, user: UserCreated, correlation_id: str) -> Appended:
        """Append the event expecting no stream: exactly one `user-created` per username."""
        event = NewEvent(
            type=USER_CREATED,
            data=encode_user_created(user),
            metadata=encode_metadata(correlation_id=correlation_id),
            content_type="application/json",
            id=uuid.uuid4(),
        )
        try:
            position = self._get_client().append_to_stream(
                stream_name(user.username),
                current_version=StreamState.NO_STREAM,
                events=event,
                timeout=self.timeout,
            )
        except (WrongCurrentVersion, StreamIsDeleted) as exc:
            raise UsernameTaken(f"username {user.username!r} is taken") from exc
        except FailedPrecondition as exc:
            if "is deleted" in str(exc):
                raise UsernameTaken(f"username {user.username!r} is taken") from exc
            raise
        except _UNAVAILABLE as exc:
            raise EventStoreUnavailable(f"EventStoreDB did not accept the write: {exc}") from exc
        except GrpcError as exc:
            if "UNAVAILABLE" in str(exc) or "DEADLINE" in str(exc):
                raise EventStoreUnavailable(f"EventStoreDB is unreachable: {exc}") from exc
            raise
        return Appended(commit_position=int(position))

    def head_position(self) -> int:
        """Commit position of the newest event of this service (0 when there is none)."""
        try:
            return int(
                self._get_client().get_commit_position(
                    filter_include=[STREAM_PREFIX + ".*"],
                    filter_by_stream_name=True,
                    timeout=self.timeout,
                )
            )
        except EventStoreDBClientException as exc:
            raise EventStoreUnavailable(f"EventStoreDB is unreachable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

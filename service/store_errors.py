"""What a failed EventStoreDB call means for a request: the one translation of esdbclient's
failures, used by `service.event_store` and nowhere else.

- An expected revision that no longer holds (`WrongCurrentVersion`), or a stream deleted for good,
  is a `StreamConflict`: the commands decide what it means (409, 412 or 404).
- Every other failure of the client, whatever its class, is a `503` with `Retry-After`, never a
  `500`: gRPC statuses (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED` "Channel closed!", ...),
  esdbclient's own classes (`ServiceUnavailable`, `DeadlineExceeded`, `CancelledByClient`,
  `DiscoveryFailed`, `NodeIsNotLeader`, `AccessDeniedError`, `InternalError`, ...), a raw
  `grpc.RpcError`, and the `ValueError` gRPC raises for a call on a channel that another thread's
  reconnection closed.
- For an append, such a failure means the outcome is unknown: the request may have reached the
  server and been written (a deadline that passed, a channel closed under the call, a retry of
  esdbclient's after either). So it is `append_outcome_unknown`, whose message says how to retry
  safely. Only a client that could not even be built sent nothing (`event_store_unavailable`).

The client's own text (gRPC debug strings, socket addresses) goes to the log with the request id
(`service.errors` logs the cause of every 5xx), never into a response.
"""

from __future__ import annotations

import grpc
from esdbclient.exceptions import (
    EventStoreDBClientException,
    FailedPrecondition,
    StreamIsDeleted,
    WrongCurrentVersion,
)

from service.errors import AppendOutcomeUnknown, EventStoreUnavailable

# What the adapter catches around a call of the client; `translate` says what each one means.
CLIENT_FAILURES: tuple[type[Exception], ...] = (
    EventStoreDBClientException,
    grpc.RpcError,
    ValueError,
)
# grpc's words for a call made on a channel that was closed (esdbclient closes the channel when
# it reconnects, under the calls of other threads).
_CLOSED_CHANNEL = ("Channel closed", "closed channel")

UNAVAILABLE_MESSAGE = "EventStoreDB is unavailable; retry shortly"
UNKNOWN_OUTCOME_MESSAGE = (
    "EventStoreDB did not confirm the write, which may or may not have been made; send the same "
    "request again with the same Idempotency-Key (or X-Request-ID)"
)


class StreamConflict(Exception):
    """The stream is not at the expected revision (or was deleted for good) when appending."""


def is_conflict(exc: Exception) -> bool:
    return isinstance(exc, WrongCurrentVersion | StreamIsDeleted) or (
        isinstance(exc, FailedPrecondition) and "is deleted" in str(exc)
    )


def is_store_failure(exc: Exception) -> bool:
    """Whether `exc`, caught around a call of the client, is a failure of EventStoreDB or of the
    way to it (not a programming error of this code)."""
    if isinstance(exc, EventStoreDBClientException | grpc.RpcError):
        return True
    return isinstance(exc, ValueError) and any(words in str(exc) for words in _CLOSED_CHANNEL)


def translate(exc: Exception, *, appending: bool = False) -> Exception:
    """The service error for a failure of a call of the client; `exc` itself when it is none
    (a programming error: a 500)."""
    if is_conflict(exc):
        return StreamConflict(type(exc).__name__)
    if not is_store_failure(exc):
        return exc
    if appending:
        return AppendOutcomeUnknown(UNKNOWN_OUTCOME_MESSAGE)
    return EventStoreUnavailable(UNAVAILABLE_MESSAGE)

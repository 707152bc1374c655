"""What the store says when it refuses something. The protocol layer turns each into the real
server's status and texts (`esdb_emulator.rpc.statuses`); these messages are for Python callers."""

from __future__ import annotations


class StoreError(Exception):
    pass


class WrongExpectedVersion(StoreError):
    """`current` is the raw last revision (-1 when the stream was never written)."""

    def __init__(self, stream: str, expected: int, current: int) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected}, current {current}")
        self.stream = stream
        self.expected = expected
        self.current = current


class StreamDeleted(StoreError):
    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream!r} is deleted")
        self.stream = stream


class StreamNotFound(StoreError):
    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream!r} is not found")
        self.stream = stream


class MaximumAppendSizeExceeded(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"an append is limited to {limit} bytes")
        self.limit = limit


class BadRequest(StoreError):
    pass


class ScavengeStopped(StoreError):
    """A scavenge was stopped (on request, or because the store closed) and changed nothing."""

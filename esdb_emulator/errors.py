"""What the store says when it refuses something; the servicers turn these into gRPC statuses."""

from __future__ import annotations


class StoreError(Exception):
    pass


class WrongExpectedVersion(StoreError):
    """`current` is the raw last revision (-1 when the stream was never written)."""

    def __init__(self, stream: str, expected: int, current: int) -> None:
        super().__init__(f"{stream}: expected {expected}, current {current}")
        self.stream = stream
        self.expected = expected
        self.current = current


class StreamDeleted(StoreError):
    def __init__(self, stream: str) -> None:
        super().__init__(f"Event stream '{stream}' is deleted.")
        self.stream = stream


class MaximumAppendSizeExceeded(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Maximum Append Size of {limit} Exceeded.")
        self.limit = limit


class BadRequest(StoreError):
    pass


class CorruptLog(StoreError):
    pass

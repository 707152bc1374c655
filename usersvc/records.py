"""A recorded event as read from `$all`, independent of the client library.

The projection, the replay, the bundle format and the emulator's import all speak this type, so
that the live worker and a replay from a bundle run exactly the same projection code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class StoredEvent:
    commit_position: int
    stream: str
    revision: int
    event_id: UUID
    type: str
    data: bytes
    metadata: bytes
    content_type: str
    recorded_at: datetime

"""The user streams this process has folded, kept so that the next request reads only what was
appended since (one short read) instead of the whole stream again.

Reading a stream costs about 65 µs of the client's CPU per event (esdbclient over grpcio), so a
user with a long history would make every PATCH, history page and time travel read and decode
all of it. An entry is never trusted alone: every use reads the stream from the entry's revision
on, so an answer is as fresh as a full read. A deletion by another process arrives that way too
(its `user-deleted` is after the entry), and a stream deleted outside usersvc is dropped.

Bounded by the number of events held, least recently used first out. One per process (each
gunicorn worker has its own).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from service.aggregate import UserStream

# Events held at most (about 300 bytes each, decoded): roughly 30 MB per process.
MAX_EVENTS = 100_000


class StreamCache:
    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._streams: OrderedDict[str, UserStream] = OrderedDict()
        self._events = 0
        self._lock = threading.Lock()

    def get(self, username: str) -> UserStream | None:
        with self._lock:
            stream = self._streams.get(username)
            if stream is not None:
                self._streams.move_to_end(username)
            return stream

    def put(self, stream: UserStream) -> None:
        """Keep `stream`, unless a newer one of the same user is kept already."""
        if stream.revision is None:
            self.drop(stream.username)
            return
        with self._lock:
            kept = self._streams.get(stream.username)
            if kept is not None:
                if kept.revision is not None and kept.revision > stream.revision:
                    return
                self._events -= len(kept.events)
            self._streams[stream.username] = stream
            self._streams.move_to_end(stream.username)
            self._events += len(stream.events)
            while self._events > self.max_events and len(self._streams) > 1:
                _, evicted = self._streams.popitem(last=False)
                self._events -= len(evicted.events)

    def drop(self, username: str) -> None:
        with self._lock:
            kept = self._streams.pop(username, None)
            if kept is not None:
                self._events -= len(kept.events)

    def __len__(self) -> int:
        return len(self._streams)

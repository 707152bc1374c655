"""Where a replay or an export reads history from: EventStoreDB over gRPC, or a bundle file.

Both yield `StoredEvent`s of the chosen stream prefix in `$all` order, strictly after a given
position, and both fail with `SourceUnavailable` naming the source when it cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from esdbclient import EventStoreDBClient
from esdbclient.exceptions import EventStoreDBClientException

from repro.bundle import BundleError, verify_bundle
from repro.bundle import read_bundle as _read_bundle
from usersvc.events import STREAM_PREFIX
from usersvc.records import StoredEvent
from worker.subscription import to_stored

SOURCE_TIMEOUT = 10.0


class SourceUnavailable(RuntimeError):
    pass


class EventSource(Protocol):
    label: str
    prefix: str  # of the stream names taken
    total: int | None  # events in the source, when known cheaply (for the ETA)

    def events(self, after: int | None) -> Iterator[StoredEvent]: ...
    def first_position(self, after: int | None) -> int | None: ...
    def last_position(self) -> int | None: ...


class EsdbSource:
    def __init__(self, url: str, prefix: str = STREAM_PREFIX) -> None:
        self.label = _without_credentials(url)
        self.total: int | None = None
        self.prefix = prefix
        self._include = [re.escape(prefix) + ".*"]
        try:
            self.client = EventStoreDBClient(url)
            self.client.get_commit_position(timeout=SOURCE_TIMEOUT)
        except (EventStoreDBClientException, ValueError) as exc:
            raise SourceUnavailable(f"cannot read EventStoreDB at {self.label}: {exc}") from None

    def events(self, after: int | None) -> Iterator[StoredEvent]:
        try:
            for recorded in self.client.read_all(
                commit_position=after, filter_include=self._include, filter_by_stream_name=True
            ):
                if after is not None and recorded.commit_position == after:
                    continue  # read_all is inclusive; replay starts after a checkpoint
                yield to_stored(recorded)
        except EventStoreDBClientException as exc:
            raise SourceUnavailable(f"reading EventStoreDB at {self.label} failed: {exc}") from None

    def first_position(self, after: int | None) -> int | None:
        for event in self.events(after):
            return event.commit_position
        return None

    def last_position(self) -> int | None:
        try:
            events = self.client.read_all(
                backwards=True, limit=1, filter_include=self._include, filter_by_stream_name=True
            )
            return next((e.commit_position for e in events), None)
        except EventStoreDBClientException as exc:
            raise SourceUnavailable(f"reading EventStoreDB at {self.label} failed: {exc}") from None

    def close(self) -> None:
        self.client.close()


class BundleSource:
    def __init__(self, path: Path, prefix: str = STREAM_PREFIX) -> None:
        self.label = f"bundle {path.name}"
        self.path = path
        self.prefix = prefix
        try:
            self.manifest = verify_bundle(path)
        except BundleError as exc:
            raise SourceUnavailable(str(exc)) from None
        # Every event matches when the bundle was exported with this prefix or a narrower one;
        # then the count and the last position are known without reading the events.
        exported = self.manifest.get("streamPrefix")
        self._all_match = isinstance(exported, str) and exported.startswith(prefix)
        self.total: int | None = int(self.manifest["count"]) if self._all_match else None

    def events(self, after: int | None) -> Iterator[StoredEvent]:
        for event in _read_bundle(self.path, verify=False):
            if (after is None or event.commit_position > after) and event.stream.startswith(
                self.prefix
            ):
                yield event

    def first_position(self, after: int | None) -> int | None:
        return next((e.commit_position for e in self.events(after)), None)

    def last_position(self) -> int | None:
        if self._all_match:
            return self.manifest["lastPosition"]  # type: ignore[no-any-return]
        last = None
        for event in self.events(None):
            last = event.commit_position
        return last

    def close(self) -> None:
        pass


def _without_credentials(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)

"""Where a replay or an export reads history from: EventStoreDB over gRPC, or a bundle file.

Both yield `StoredEvent`s of the chosen stream prefix in `$all` order, strictly after a given
position, and both fail with `SourceUnavailable` naming the source when it cannot be read:
`SourceLost` when a server that answered stops answering while it is read (a replay then stopped
partway), `SourceUnavailable` itself when the source cannot be used at all (unreachable, or a
bundle that is not one, or damaged: input to refuse). A
bundle is checked while it is read: a damaged or truncated one fails at the point the damage is
found, at the latest at its trailer, so a reader that discards its work on failure writes nothing.

EventStoreDB is read with forgetting honoured (`repro.forgetting`): events below their stream's
truncation (`$tb`, a deletion) are not yielded although `$all` still holds them until a scavenge,
and `check_forgotten` tells a copy that a stream was truncated while it was being read. A bundle
holds only what its export kept, so it needs neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from esdbclient import EventStoreDBClient
from esdbclient.exceptions import EventStoreDBClientException

from repro.bundle import BundleError, read_bundle, read_manifest, verify_bundle
from repro.forgetting import TRUNCATION_TYPES, ForgottenDuringRead, Truncations
from usersvc.events import STREAM_PREFIX
from usersvc.records import StoredEvent
from worker.subscription import to_stored

SOURCE_TIMEOUT = 10.0


class SourceUnavailable(RuntimeError):
    pass


class SourceLost(SourceUnavailable):
    """Reading a source that answered failed (a server gone, a connection lost): not something
    wrong with the input; the same read may succeed later."""


class EventSource(Protocol):
    label: str
    prefix: str  # of the stream names taken

    def events(self, after: int | None) -> Iterator[StoredEvent]: ...
    def span(self, after: int | None) -> tuple[int, int] | None:
        """The first and last positions after `after`, when known cheaply (for an ETA)."""
        ...

    def check_integrity(self) -> None:
        """Raise `SourceUnavailable` if the source is damaged anywhere (for a reader that stops
        early and so never reaches the check made at the end)."""
        ...

    def check_forgotten(self) -> None:
        """Raise `SourceUnavailable` if an event already yielded by `events` has since been
        truncated at the source (a deletion during the read): a copy must then be discarded."""
        ...

    def close(self) -> None: ...


class EsdbSource:
    def __init__(self, url: str, prefix: str = STREAM_PREFIX) -> None:
        self.label = _without_credentials(url)
        self.prefix = prefix
        self._include = [re.escape(prefix) + ".*"]
        try:
            self.client = EventStoreDBClient(url)
            self.client.get_commit_position(timeout=SOURCE_TIMEOUT)
        except (EventStoreDBClientException, ValueError) as exc:
            raise SourceUnavailable(f"cannot read EventStoreDB at {self.label}: {exc}") from None
        self._truncations: Truncations | None = None
        self._since: int | None = None

    def events(self, after: int | None) -> Iterator[StoredEvent]:
        truncations = self._truncations = Truncations(self.prefix)
        self._since = None
        truncations.learn(self._truncation_events(None))
        keep = truncations.keep
        for event in self._read(after):
            if keep(event):
                yield event

    def span(self, after: int | None) -> tuple[int, int] | None:
        first = next((e.commit_position for e in self._read(after)), None)
        try:
            events = self.client.read_all(
                backwards=True, limit=1, filter_include=self._include, filter_by_stream_name=True
            )
            last = next((e.commit_position for e in events), None)
        except EventStoreDBClientException as exc:
            raise SourceUnavailable(f"reading EventStoreDB at {self.label} failed: {exc}") from None
        return None if first is None or last is None else (first, last)

    def check_forgotten(self) -> None:
        if self._truncations is None:
            return
        try:
            self._truncations.recheck(self._truncation_events(self._since))
        except ForgottenDuringRead as exc:
            raise SourceUnavailable(f"EventStoreDB at {self.label}: {exc}") from None

    def _read(self, after: int | None) -> Iterator[StoredEvent]:
        try:
            for recorded in self.client.read_all(
                commit_position=after, filter_include=self._include, filter_by_stream_name=True
            ):
                if after is not None and recorded.commit_position == after:
                    continue  # read_all is inclusive; replay starts after a checkpoint
                yield to_stored(recorded)
        except EventStoreDBClientException as exc:
            raise SourceLost(f"reading EventStoreDB at {self.label} failed: {exc}") from None

    def _truncation_events(self, after: int | None) -> Iterator[StoredEvent]:
        """Every metadata event and tombstone after `after` (all of them for None); remembers
        the position of the last, where the next call may start."""
        try:
            for recorded in self.client.read_all(
                commit_position=after,
                filter_include=TRUNCATION_TYPES,
                filter_by_stream_name=False,
            ):
                event = to_stored(recorded)
                self._since = event.commit_position
                yield event
        except EventStoreDBClientException as exc:
            raise SourceLost(
                f"reading the stream metadata of EventStoreDB at {self.label} failed: {exc}"
            ) from None

    def check_integrity(self) -> None:
        pass  # the server's own concern

    def close(self) -> None:
        self.client.close()


class BundleSource:
    def __init__(self, path: Path, prefix: str = STREAM_PREFIX) -> None:
        self.label = f"bundle {path.name}"
        self.path = path
        self.prefix = prefix
        try:
            self.manifest = read_manifest(path)
        except BundleError as exc:
            raise SourceUnavailable(str(exc)) from None

    def events(self, after: int | None) -> Iterator[StoredEvent]:
        prefix = self.prefix
        try:
            for event in read_bundle(self.path):
                if (after is None or event.commit_position > after) and event.stream.startswith(
                    prefix
                ):
                    yield event
        except BundleError as exc:
            raise SourceUnavailable(str(exc)) from None

    def span(self, after: int | None) -> tuple[int, int] | None:
        return None  # the last position is in the trailer, known only once everything is read

    def check_integrity(self) -> None:
        try:
            verify_bundle(self.path)
        except BundleError as exc:
            raise SourceUnavailable(str(exc)) from None

    def check_forgotten(self) -> None:
        pass  # a bundle holds what its export kept; it never changes

    def close(self) -> None:
        pass


def _without_credentials(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)

"""Streams folded before are extended with what was appended since, never trusted alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from esdbclient import RecordedEvent

from service.aggregate import load
from service.commands import UserCommands
from service.errors import UserNotFound
from service.preconditions import parse
from service.stream_cache import StreamCache
from tests.fixtures.service_fakes import MemoryStore
from usersvc.events import UserCreated

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | None]] = []

    def read(self, stream: str) -> Sequence[RecordedEvent]:
        self.calls.append(("read", None))
        return super().read(stream)

    def read_from(self, stream: str, revision: int) -> Sequence[RecordedEvent] | None:
        self.calls.append(("read_from", revision))
        return super().read_from(stream, revision)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def commands(store: CountingStore) -> UserCommands:
    handler = UserCommands(store, clock=lambda: NOW)
    handler.register(UserCreated("ann", "Ann", NOW), "c")
    return handler


def rename(commands: UserCommands, revision: int, name: str) -> None:
    condition = parse(f'"{revision}"')
    assert condition is not None
    commands.change_full_name("ann", condition, name, "c")


def test_a_stream_folded_before_is_read_only_from_its_next_revision(
    commands: UserCommands, store: CountingStore
) -> None:
    rename(commands, 0, "Ann B")
    rename(commands, 1, "Ann C")
    assert commands.load("ann").user is not None
    assert store.calls == [("read", None), ("read_from", 1), ("read_from", 2)]


def test_a_deletion_by_another_process_reaches_a_kept_stream(
    commands: UserCommands, store: CountingStore
) -> None:
    assert commands.load("ann").user is not None
    other = UserCommands(store, clock=lambda: NOW)
    condition = parse("*")
    assert condition is not None
    other.delete("ann", condition, "c")
    stream = commands.load("ann")
    assert stream.user is None
    assert stream.life() == ()


def test_a_stream_deleted_outside_usersvc_is_dropped(
    commands: UserCommands, store: CountingStore
) -> None:
    assert commands.load("ann").user is not None
    del store.streams["user-ann"]
    with pytest.raises(UserNotFound):
        rename(commands, 0, "X")
    assert len(commands.cache) == 0


def test_a_kept_stream_holds_only_the_current_life(
    commands: UserCommands, store: CountingStore
) -> None:
    rename(commands, 0, "Ann B")
    condition = parse("*")
    assert condition is not None
    commands.delete("ann", condition, "c")
    commands.register(UserCreated("ann", "Again", NOW), "c")
    stream = commands.load("ann")
    assert [e.revision for e in stream.events] == [3]
    assert stream.revision == 3


def test_the_cache_keeps_the_newest_and_lets_the_least_recently_used_go(
    store: CountingStore,
) -> None:
    handler = UserCommands(store, clock=lambda: NOW)
    for name in ("a", "b", "c"):
        handler.register(UserCreated(name, name.upper(), NOW), "c")
    streams = {name: load(name, store.read(f"user-{name}")) for name in ("a", "b", "c")}
    cache = StreamCache(max_events=2)
    cache.put(streams["a"])
    cache.put(streams["b"])
    assert cache.get("a") is streams["a"]
    cache.put(streams["c"])
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (streams["a"], None, streams["c"])
    older = load("a", [])
    cache.put(older)
    assert cache.get("a") is None, "a stream that no longer exists is dropped"

"""A registration sent again: with a key it finds its own event; without one it is recognised only
when the stream still ends with that very registration, unkeyed and recent (service.retries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.commands import UserCommands
from service.errors import UsernameTaken
from service.preconditions import parse
from service.retries import KEYED_ID_VERSION, event_id
from tests.fixtures.service_fakes import MemoryStore
from usersvc.events import UserCreated

WINDOW = 300.0
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def commands(store: MemoryStore, clock: Clock) -> UserCommands:
    return UserCommands(store, clock=clock, retry_window=WINDOW)


def ann(full_name: str = "Ann Lee") -> UserCreated:
    return UserCreated("ann", full_name, START)


def test_the_same_body_sent_again_without_a_key_is_answered_as_its_retry(
    commands: UserCommands, store: MemoryStore, clock: Clock
) -> None:
    first = commands.register(ann(), "attempt-1")
    clock.now += timedelta(seconds=WINDOW - 1)
    assert commands.register(ann(), "attempt-2") == first
    assert len(store.streams["user-ann"]) == 1


def test_another_full_name_without_a_key_is_taken(commands: UserCommands) -> None:
    commands.register(ann(), "attempt-1")
    with pytest.raises(UsernameTaken):
        commands.register(ann("Ann Other"), "attempt-2")


def test_the_same_body_after_the_window_is_taken(commands: UserCommands, clock: Clock) -> None:
    commands.register(ann(), "attempt-1")
    clock.now += timedelta(seconds=WINDOW + 1)
    with pytest.raises(UsernameTaken):
        commands.register(ann(), "attempt-2")


def test_the_same_body_after_the_user_changed_is_taken(commands: UserCommands) -> None:
    commands.register(ann(), "attempt-1")
    condition = parse('"0"')
    assert condition is not None
    commands.change_full_name("ann", condition, "Ann Lee-Smith", "change")
    with pytest.raises(UsernameTaken):
        commands.register(ann(), "attempt-2")
    with pytest.raises(UsernameTaken):
        commands.register(ann("Ann Lee-Smith"), "attempt-3")


def test_a_registration_made_under_a_key_answers_only_to_that_key(
    commands: UserCommands, store: MemoryStore
) -> None:
    first = commands.register(ann(), "r", idempotency_key="key-1")
    assert store.streams["user-ann"][0].id.version == KEYED_ID_VERSION
    with pytest.raises(UsernameTaken):
        commands.register(ann(), "plain")
    with pytest.raises(UsernameTaken):
        commands.register(ann(), "r", idempotency_key="key-2")
    assert commands.register(ann(), "r", idempotency_key="key-1") == first


def test_a_keyed_request_is_not_taken_for_a_plain_one(commands: UserCommands) -> None:
    commands.register(ann(), "plain")
    with pytest.raises(UsernameTaken):
        commands.register(ann(), "r", idempotency_key="key-1")


def test_a_window_of_zero_recognises_no_plain_retry(store: MemoryStore, clock: Clock) -> None:
    commands = UserCommands(store, clock=clock, retry_window=0)
    commands.register(ann(), "attempt-1")
    with pytest.raises(UsernameTaken):
        commands.register(ann(), "attempt-2")


def test_a_plain_retry_of_a_new_life_is_answered_with_that_life(
    commands: UserCommands, store: MemoryStore
) -> None:
    commands.register(ann(), "first life")
    condition = parse("*")
    assert condition is not None
    commands.delete("ann", condition, "delete")
    second = commands.register(ann(), "second life")
    assert second.revision == 2
    assert commands.register(ann(), "its retry") == second


def test_key_derived_ids_are_version_5_and_differ_by_key() -> None:
    assert event_id(ann(), "a").version == KEYED_ID_VERSION
    assert event_id(ann(), "a") != event_id(ann(), "b")

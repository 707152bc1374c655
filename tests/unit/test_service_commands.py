"""The user's commands against an in-memory store: what each appends, expects and refuses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest
from esdbclient import NewEvent, RecordedEvent

from service.commands import UserCommands
from service.errors import (
    EventStoreUnavailable,
    EventUnreadable,
    PreconditionFailed,
    UsernameTaken,
    UserNotFound,
)
from service.preconditions import Condition, parse
from service.retries import event_id
from tests.fixtures.service_fakes import MemoryStore
from usersvc.events import UserCreated

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ANN = UserCreated("ann", "Ann Lee", NOW)
STREAM = "user-ann"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def commands(store: MemoryStore) -> UserCommands:
    return UserCommands(store, clock=lambda: NOW)


def cond(header: str) -> Condition:
    condition = parse(header)
    assert condition is not None
    return condition


def types(store: MemoryStore) -> list[str]:
    return [e.type for e in store.streams.get(STREAM, [])]


def data_of(store: MemoryStore, index: int) -> dict[str, object]:
    parsed: dict[str, object] = orjson.loads(store.streams[STREAM][index].data)
    return parsed


def live_ann(commands: UserCommands, changes: Sequence[str] = ()) -> None:
    commands.register(ANN, "c")
    for revision, name in enumerate(changes):
        commands.change_full_name("ann", cond(f'"{revision}"'), name, "c")


def test_register_appends_the_contract_event_expecting_no_stream(
    commands: UserCommands, store: MemoryStore
) -> None:
    written = commands.register(ANN, "corr-1")
    assert (written.commit_position, written.revision) == (1001, 0)
    ((stream, expected, event),) = store.appended
    assert (stream, expected, event.type, event.content_type) == (
        STREAM,
        None,
        "user-created",
        "application/json",
    )
    assert orjson.loads(event.data) == {
        "username": "ann",
        "fullName": "Ann Lee",
        "openedAt": "2024-05-01T12:00:00.000Z",
    }
    assert orjson.loads(event.metadata) == {"schemaVersion": 1, "correlationId": "corr-1"}


@pytest.mark.parametrize("changes", [(), ("Ann B",)], ids=["created", "changed"])
def test_register_of_a_live_username_is_409_and_appends_nothing(
    commands: UserCommands, store: MemoryStore, changes: tuple[str, ...]
) -> None:
    live_ann(commands, changes)
    before = len(store.appended)
    with pytest.raises(UsernameTaken):
        commands.register(UserCreated("ann", "Impostor", NOW), "other")
    assert len(store.appended) == before


def test_register_after_a_deletion_appends_after_it_expecting_exactly_its_revision(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands, ["Ann B"])
    commands.delete("ann", cond("*"), "c")
    written = commands.register(UserCreated("ann", "Ann Again", NOW), "again")
    assert written.revision == 3
    assert store.appended[-1][1] == 2
    assert types(store) == [
        "user-created",
        "user-full-name-changed",
        "user-deleted",
        "user-created",
    ]


def test_register_after_a_half_done_deletion_finishes_the_forgetting_first(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands)
    store.truncate_fail = EventStoreUnavailable("metadata write lost")
    with pytest.raises(EventStoreUnavailable):
        commands.delete("ann", cond('"0"'), "c")
    assert STREAM not in store.truncated
    store.truncate_fail = None
    commands.register(UserCreated("ann", "Ann Again", NOW), "again")
    assert store.truncated[STREAM] == 1


def test_the_same_request_id_registers_once_and_answers_the_same_twice(
    commands: UserCommands, store: MemoryStore
) -> None:
    first = commands.register(ANN, "req-1", idempotency_key="req-1")
    again = commands.register(ANN, "req-1", idempotency_key="req-1")
    assert again == first
    assert len(store.appended) == 1
    assert store.appended[0][2].id == event_id(ANN, "req-1")
    with pytest.raises(UsernameTaken):
        commands.register(ANN, "req-2", idempotency_key="req-2")


def test_event_ids_differ_by_request_and_by_content() -> None:
    other_name = UserCreated("ann", "Other", NOW)
    ids = {event_id(ANN, "req-1"), event_id(ANN, "req-2"), event_id(other_name, "req-1")}
    assert len(ids) == 3


def test_a_change_appends_the_new_name_expecting_the_revision_read(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands)
    changed = commands.change_full_name("ann", cond('"0"'), "Ann B", "corr-2")
    assert changed.appended
    assert (changed.user.full_name, changed.user.revision, changed.written.revision) == (
        "Ann B",
        1,
        1,
    )
    assert store.appended[-1][1] == 0
    assert data_of(store, 1) == {
        "username": "ann",
        "fullName": "Ann B",
        "changedAt": "2024-05-01T12:00:00.000Z",
    }


@pytest.mark.parametrize("name", ["Ann Lee", None], ids=["same name", "no name"])
def test_a_change_to_the_same_name_appends_nothing(
    commands: UserCommands, store: MemoryStore, name: str | None
) -> None:
    live_ann(commands)
    changed = commands.change_full_name("ann", cond('"0"'), name, "c")
    assert not changed.appended
    assert (changed.user.revision, changed.written.commit_position) == (0, 1001)
    assert len(store.appended) == 1


def test_a_stale_if_match_is_412_naming_the_current_revision_and_appends_nothing(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands, ["Ann B"])
    with pytest.raises(PreconditionFailed) as caught:
        commands.change_full_name("ann", cond('"0"'), "Ann C", "c")
    assert caught.value.headers() == {"ETag": '"1"'}
    assert len(store.appended) == 2


class RacingStore(MemoryStore):
    """Someone else changes the user between this request's read and its append."""

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        if event.type == "user-full-name-changed" and not getattr(self, "raced", False):
            self.raced = True
            other = NewEvent(type=event.type, data=event.data.replace(b"Mine", b"Theirs"))
            super().append(stream, expected, other)
        return super().append(stream, expected, event)


def test_a_change_between_read_and_append_is_412_never_an_overwrite() -> None:
    store = RacingStore()
    commands = UserCommands(store, clock=lambda: NOW)
    commands.register(ANN, "c")
    with pytest.raises(PreconditionFailed) as caught:
        commands.change_full_name("ann", cond('"0"'), "Mine", "c")
    assert caught.value.headers() == {"ETag": '"1"'}
    assert [orjson.loads(e.data)["fullName"] for e in store.streams[STREAM]] == [
        "Ann Lee",
        "Theirs",
    ]


class TimedOutStore(MemoryStore):
    """The append is written, but the answer is lost: the retry finds the stream moved on."""

    def append(self, stream: str, expected: int | None, event: NewEvent) -> int:
        if event.type != "user-created" and not getattr(self, "lost", False):
            self.lost = True
            super().append(stream, expected, event)
        return super().append(stream, expected, event)


def test_an_append_written_by_an_attempt_that_timed_out_is_a_success() -> None:
    store = TimedOutStore()
    commands = UserCommands(store, clock=lambda: NOW)
    commands.register(ANN, "c")
    changed = commands.change_full_name("ann", cond('"0"'), "Ann B", "c")
    assert (changed.written.revision, changed.user.full_name) == (1, "Ann B")
    assert len(store.streams[STREAM]) == 2


@pytest.mark.parametrize("deleted", [False, True], ids=["never existed", "deleted"])
def test_change_and_delete_of_no_live_user_are_404(commands: UserCommands, deleted: bool) -> None:
    if deleted:
        live_ann(commands)
        commands.delete("ann", cond("*"), "c")
    with pytest.raises(UserNotFound):
        commands.change_full_name("ann", cond("*"), "X", "c")
    with pytest.raises(UserNotFound):
        commands.delete("ann", cond("*"), "c")


def test_delete_appends_a_deletion_without_personal_data_then_truncates_before_it(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands, ["Ann B"])
    written = commands.delete("ann", cond('"1"'), "c")
    assert written.revision == 2
    assert data_of(store, 2) == {"username": "ann", "deletedAt": "2024-05-01T12:00:00.000Z"}
    assert store.truncated[STREAM] == 2
    assert [e.type for e in store.read(STREAM)] == ["user-deleted"]


def test_delete_with_a_stale_if_match_is_412_and_appends_nothing(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands, ["Ann B"])
    with pytest.raises(PreconditionFailed):
        commands.delete("ann", cond('"0"'), "c")
    assert types(store) == ["user-created", "user-full-name-changed"]


def test_repeating_a_half_done_deletion_finishes_it_whatever_its_if_match(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands)
    store.truncate_fail = EventStoreUnavailable("lost")
    with pytest.raises(EventStoreUnavailable):
        commands.delete("ann", cond('"0"'), "c")
    store.truncate_fail = None
    written = commands.delete("ann", cond('"0"'), "c")
    assert (written.revision, store.truncated[STREAM]) == (1, 1)
    assert types(store) == ["user-created", "user-deleted"]
    with pytest.raises(UserNotFound):
        commands.delete("ann", cond('"0"'), "c")


def test_an_event_this_code_cannot_read_is_named_and_nothing_is_written(
    commands: UserCommands, store: MemoryStore
) -> None:
    live_ann(commands)
    bad = store.streams[STREAM][0]
    store.streams[STREAM][0] = RecordedEvent(
        type=bad.type,
        data=b"{}",
        metadata=bad.metadata,
        content_type=bad.content_type,
        id=bad.id,
        stream_name=bad.stream_name,
        stream_position=0,
        commit_position=bad.commit_position,
        prepare_position=bad.prepare_position,
    )
    with pytest.raises(EventUnreadable, match="event 0 of 'ann'"):
        commands.change_full_name("ann", cond('"0"'), "X", "c")
    assert len(store.appended) == 1

"""The expected-version decision (`esdb_emulator.model.decisions.decide`), row by row."""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from esdb_emulator.model import ANY, NO_STREAM, STREAM_EXISTS, StreamDeleted, WrongExpectedVersion
from esdb_emulator.model.decisions import AlreadyWritten, StreamView, Write, decide

A, B, C, D = (uuid.uuid4() for _ in range(4))


def view(
    written: list[UUID] | None = None,
    *,
    tombstoned: bool = False,
    soft_deleted: bool = False,
    metadata_exists: bool = False,
) -> StreamView:
    ids = written or []
    return StreamView(
        name="s",
        current=len(ids) - 1,
        tombstoned=tombstoned,
        soft_deleted=soft_deleted,
        metadata_exists=metadata_exists or soft_deleted,
        ids={event_id: revision for revision, event_id in enumerate(ids)},
        revision_ids=ids,
    )


@pytest.mark.parametrize("expected", [ANY, NO_STREAM, STREAM_EXISTS, 0])
def test_a_tombstoned_stream_refuses_every_expected_version(expected: int) -> None:
    with pytest.raises(StreamDeleted):
        decide(view([A], tombstoned=True), expected, [B])


def test_stream_exists_on_a_soft_deleted_stream_says_deleted() -> None:
    with pytest.raises(StreamDeleted):
        decide(view([A], soft_deleted=True), STREAM_EXISTS, [B])


def test_stream_exists_on_a_stream_never_written_is_wrong_with_current_minus_one() -> None:
    with pytest.raises(WrongExpectedVersion) as refused:
        decide(view(), STREAM_EXISTS, [A])
    assert refused.value.current == -1


def test_stream_exists_on_a_stream_with_only_metadata_writes() -> None:
    assert decide(view(metadata_exists=True), STREAM_EXISTS, [A]) == Write()


def test_any_with_new_ids_writes() -> None:
    assert decide(view([A]), ANY, [B]) == Write()


def test_any_with_ids_already_written_in_order_is_already_written() -> None:
    assert decide(view([A, B, C]), ANY, [B, C]) == AlreadyWritten(2)


def test_any_with_the_first_id_written_but_not_the_rest_is_wrong() -> None:
    with pytest.raises(WrongExpectedVersion):
        decide(view([A, B]), ANY, [A, C])


def test_the_current_revision_writes() -> None:
    assert decide(view([A, B]), 1, [C]) == Write()


def test_a_revision_beyond_the_current_one_is_wrong_and_says_the_current_one() -> None:
    with pytest.raises(WrongExpectedVersion) as refused:
        decide(view([A, B]), 5, [C])
    assert (refused.value.expected, refused.value.current) == (5, 1)


def test_an_earlier_revision_followed_by_the_same_ids_is_already_written() -> None:
    assert decide(view([A, B, C]), 0, [B, C]) == AlreadyWritten(2)


def test_an_earlier_revision_followed_by_other_ids_is_wrong() -> None:
    with pytest.raises(WrongExpectedVersion):
        decide(view([A, B, C]), 0, [B, D])


def test_an_earlier_revision_with_no_events_is_wrong() -> None:
    with pytest.raises(WrongExpectedVersion):
        decide(view([A, B]), 0, [])


def test_no_stream_re_appending_the_first_event_is_already_written() -> None:
    assert decide(view([A]), NO_STREAM, [A]) == AlreadyWritten(0)


def test_no_stream_on_a_soft_deleted_stream_writes_and_so_undeletes() -> None:
    assert decide(view([A], soft_deleted=True), NO_STREAM, [B]) == Write()


def test_no_stream_on_a_live_stream_with_other_ids_is_wrong() -> None:
    with pytest.raises(WrongExpectedVersion):
        decide(view([A]), NO_STREAM, [B])

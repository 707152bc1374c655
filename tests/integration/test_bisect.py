"""`repro.bisect` against real PostgreSQL: a planted projection bug found among 100,000 events of
a bundle and 10,000 over gRPC, the answers for checks that never fail or fail from the start,
the rule tested on the rest of the history, and nothing left behind whatever happens.

The bug is `tests.fixtures.planted.EmptiesCommaNames` (a full-name change with a comma empties
the name), triggered by the one such event of a generated history.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from esdb_emulator import EmbeddedServer
from repro.bisect import (
    BATCH_SIZE,
    BisectError,
    BisectRequest,
    FailsAtStart,
    Found,
    NeverFails,
    Outcome,
    RuleBroken,
    RuleHeld,
    RuleUnchecked,
    bisect,
)
from repro.bisect_report import report
from repro.bundle import write_bundle
from repro.checks import Check, CheckError, SqlCheck, Verdict, load_check
from repro.cutoff import ReplayError, UntilPosition
from repro.history import BundleSource, EsdbSource
from tests.fixtures.generated_history import VICTIM, generated
from tests.fixtures.planted import EMPTY_NAMES, EmptiesCommaNames, leftovers
from usersvc.records import StoredEvent
from usersvc_cli.emulator_command import import_events

BIG = 100_000
BIG_VICTIM = 73_456
RIGHT = Verdict(False, ("username", "fullName"), (), 0)
WRONG = Verdict(True, ("username", "fullName"), ((VICTIM, ""),), 1)


def bundle_of(path: Path, events: list[StoredEvent]) -> BundleSource:
    write_bundle(path, events, {"source": "test", "streamPrefix": "user-"})
    return BundleSource(path)


def run(source: BundleSource | EsdbSource, pg_url: str, check: Check, **options: object) -> Outcome:
    request = BisectRequest(
        database_url=pg_url,
        check=check,
        projection=EmptiesCommaNames,
        **options,  # type: ignore[arg-type]
    )
    return bisect(source, request)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StoredEvent]]:
    events = generated(BIG, victim=BIG_VICTIM)
    path = tmp_path_factory.mktemp("bisect") / "big.bundle"
    write_bundle(path, events, {"source": "test", "streamPrefix": "user-"})
    return path, events


@pytest.mark.slow
def test_the_planted_event_is_found_among_100000_in_a_bundle(
    big: tuple[Path, list[StoredEvent]], pg_url: str
) -> None:
    path, events = big
    outcome = run(BundleSource(path), pg_url, SqlCheck(EMPTY_NAMES))
    assert isinstance(outcome, Found)
    culprit = outcome.culprit
    assert culprit.event == events[BIG_VICTIM]
    assert culprit.number == BIG_VICTIM + 1
    assert culprit.previous_position == events[BIG_VICTIM - 1].commit_position
    assert culprit.before == RIGHT
    assert culprit.after == WRONG
    assert culprit.row_before is not None
    assert culprit.row_before["fullName"] == "Person 0"
    assert culprit.row_after is not None
    assert culprit.row_after["fullName"] == ""
    assert culprit.row_after["eventId"] == events[BIG_VICTIM].event_id
    # The failing batch is the 8th of 10; the 2 after it and the end were checked.
    assert outcome.rule == RuleHeld(checked=2, until=events[-1].commit_position)
    assert not outcome.unstable
    assert outcome.halted is None


@pytest.mark.slow
def test_the_bisect_costs_one_pass_plus_about_two_batches(
    big: tuple[Path, list[StoredEvent]], pg_url: str
) -> None:
    path, _ = big
    outcome = run(BundleSource(path), pg_url, SqlCheck(EMPTY_NAMES), check_rest=False)
    assert isinstance(outcome, Found)
    cost = outcome.cost
    assert cost.events == 80_000  # up to the end of the failing batch, then it stopped
    assert cost.batches == 8
    assert cost.probes <= 14  # log2 of the batch size, rounded up
    assert cost.reapplied <= 2 * BATCH_SIZE + 1
    assert outcome.rule == RuleUnchecked()


@pytest.mark.emulator
def test_the_planted_event_is_found_over_grpc(own_emulator: EmbeddedServer, pg_url: str) -> None:
    store = own_emulator.open_store()
    events = generated(10_000, first_position=store.last_position() + 1_000, victim=6_789)
    import_events(store, events)
    source = EsdbSource(own_emulator.connection_string)
    try:
        outcome = run(
            source, pg_url, load_check("tests.fixtures.planted:has_empty_name"), batch_size=1_000
        )
    finally:
        source.close()
    assert isinstance(outcome, Found)
    found = outcome.culprit.event
    victim = events[6_789]
    assert (found.commit_position, found.event_id, found.stream, found.type, found.revision) == (
        victim.commit_position,
        victim.event_id,
        victim.stream,
        victim.type,
        victim.revision,
    )
    assert found.data == victim.data
    assert outcome.culprit.number == 6_790
    assert outcome.culprit.before == Verdict(False)
    assert outcome.culprit.after == Verdict(True)
    assert outcome.rule == RuleHeld(checked=3, until=events[-1].commit_position)
    assert leftovers(pg_url) == []


def test_a_check_that_never_fails_blames_no_event(pg_url: str, tmp_path: Path) -> None:
    source = bundle_of(tmp_path / "clean.bundle", generated(3_000))
    outcome = run(source, pg_url, SqlCheck(EMPTY_NAMES), batch_size=1_000)
    assert isinstance(outcome, NeverFails)
    assert outcome.last == RIGHT
    assert outcome.halted is None
    assert outcome.cost.events == 3_000
    assert report(outcome)[0].startswith("bisect: the check never failed")


def test_a_check_that_fails_from_the_first_event_blames_it(pg_url: str, tmp_path: Path) -> None:
    events = generated(3_000)
    source = bundle_of(tmp_path / "any.bundle", events)
    outcome = run(source, pg_url, SqlCheck('SELECT username FROM "user"'), batch_size=1_000)
    assert isinstance(outcome, Found)
    assert outcome.culprit.event == events[0]
    assert outcome.culprit.number == 1
    assert outcome.culprit.previous_position is None
    assert outcome.culprit.before == Verdict(False, ("username",), (), 0)
    assert outcome.culprit.after == Verdict(True, ("username",), (("u0000000",),), 1)
    assert "(the first event of the range)" in report(outcome)[0]


def test_a_check_that_fails_before_any_event_blames_none(pg_url: str, tmp_path: Path) -> None:
    source = bundle_of(tmp_path / "any.bundle", generated(100))
    outcome = run(source, pg_url, SqlCheck("SELECT 1 AS always"))
    assert isinstance(outcome, FailsAtStart)
    assert outcome.position is None
    assert outcome.verdict == Verdict(True, ("always",), ((1,),), 1)
    assert outcome.cost.events == 0
    assert "on the empty read model" in report(outcome)[0]


def test_a_check_that_passes_again_later_is_reported_as_breaking_the_rule(
    pg_url: str, tmp_path: Path
) -> None:
    events = generated(3_000, victim=1_234, healed=2_345)
    outcome = run(
        bundle_of(tmp_path / "healed.bundle", events),
        pg_url,
        SqlCheck(EMPTY_NAMES),
        batch_size=500,
    )
    assert isinstance(outcome, Found)
    assert outcome.culprit.event == events[1_234]
    # The batch of the healing event ends with event 2,499: the first boundary where it holds.
    assert outcome.rule == RuleBroken(events[2_499].commit_position, RIGHT)
    assert any("NOT TRUE for this history" in line for line in report(outcome))


def test_the_search_starts_after_from_position_on_the_real_state_there(
    pg_url: str, tmp_path: Path
) -> None:
    events = generated(3_000, victim=2_222)
    source = bundle_of(tmp_path / "from.bundle", events)
    outcome = run(
        source,
        pg_url,
        SqlCheck(EMPTY_NAMES),
        from_position=events[1_999].commit_position,
        batch_size=500,
    )
    assert isinstance(outcome, Found)
    assert outcome.culprit.event == events[2_222]
    assert outcome.culprit.number == 223  # the 223rd event after --from-position
    assert outcome.cost.prefix_events == 2_000
    assert outcome.cost.events == 1_000


def test_a_from_position_after_the_culprit_fails_at_the_start(pg_url: str, tmp_path: Path) -> None:
    events = generated(3_000, victim=1_000)
    position = events[2_000].commit_position
    outcome = run(
        bundle_of(tmp_path / "late.bundle", events),
        pg_url,
        SqlCheck(EMPTY_NAMES),
        from_position=position,
    )
    assert outcome == FailsAtStart(WRONG, position, outcome.cost)


def test_the_search_ends_at_the_cutoff(pg_url: str, tmp_path: Path) -> None:
    events = generated(3_000, victim=2_500)
    outcome = run(
        bundle_of(tmp_path / "cut.bundle", events),
        pg_url,
        SqlCheck(EMPTY_NAMES),
        cutoff=UntilPosition(events[2_000].commit_position),
    )
    assert isinstance(outcome, NeverFails)
    assert outcome.cost.events == 2_001


def test_an_event_the_projection_cannot_apply_ends_the_search_there(
    pg_url: str, tmp_path: Path
) -> None:
    events = generated(2_000)
    events[1_500] = dataclasses.replace(events[1_500], data=b"{}")
    outcome = run(
        bundle_of(tmp_path / "halts.bundle", events),
        pg_url,
        SqlCheck(EMPTY_NAMES),
        batch_size=1_000,
    )
    assert isinstance(outcome, NeverFails)
    assert outcome.halted is not None
    assert outcome.halted.commit_position == events[1_500].commit_position
    assert outcome.cost.events == 1_500
    assert report(outcome)[0] == "bisect: the check never failed before the projection halted:"


def test_a_malformed_event_before_from_position_is_an_error(pg_url: str, tmp_path: Path) -> None:
    events = generated(2_000)
    events[500] = dataclasses.replace(events[500], data=b"{}")
    with pytest.raises(BisectError, match="before --from-position"):
        run(
            bundle_of(tmp_path / "early.bundle", events),
            pg_url,
            SqlCheck(EMPTY_NAMES),
            from_position=events[1_000].commit_position,
        )
    assert leftovers(pg_url) == []


def test_a_range_outside_the_history_is_refused(pg_url: str, tmp_path: Path) -> None:
    events = generated(100)
    with pytest.raises(ReplayError, match="after the last event"):
        run(
            bundle_of(tmp_path / "short.bundle", events),
            pg_url,
            SqlCheck(EMPTY_NAMES),
            cutoff=UntilPosition(events[-1].commit_position + 1),
        )
    assert leftovers(pg_url) == []


def test_a_check_with_an_sql_error_is_refused_before_any_event(pg_url: str, tmp_path: Path) -> None:
    source = bundle_of(tmp_path / "any.bundle", generated(100))
    with pytest.raises(CheckError, match=r"before the first event: .*nosuchtable"):
        run(source, pg_url, SqlCheck("SELECT * FROM nosuchtable"))
    assert leftovers(pg_url) == []


def test_a_check_that_does_not_return_a_bool_is_refused(pg_url: str, tmp_path: Path) -> None:
    source = bundle_of(tmp_path / "any.bundle", generated(100))
    with pytest.raises(CheckError, match="returned str, not a bool"):
        run(source, pg_url, load_check("tests.fixtures.planted:not_an_answer"))


def test_an_interrupted_bisect_leaves_nothing_behind(pg_url: str, tmp_path: Path) -> None:
    source = bundle_of(tmp_path / "any.bundle", generated(3_000))
    with pytest.raises(KeyboardInterrupt):
        run(source, pg_url, load_check("tests.fixtures.planted:interrupts"), batch_size=1_000)
    assert leftovers(pg_url) == []


def test_the_check_runs_in_the_throwaway_schema_and_cannot_change_it(
    pg_url: str, tmp_path: Path
) -> None:
    source = bundle_of(tmp_path / "any.bundle", generated(3_000))
    # A check that deletes every row would make every later check pass if it were kept.
    outcome = run(
        source,
        pg_url,
        SqlCheck('DELETE FROM "user" RETURNING username'),
        batch_size=1_000,
    )
    assert isinstance(outcome, Found)
    assert outcome.culprit.number == 1
    assert outcome.rule == RuleHeld(checked=2, until=source_last(tmp_path / "any.bundle"))


def source_last(path: Path) -> int:
    from repro.bundle import read_trailer

    return int(read_trailer(path)["lastPosition"])


def test_a_projection_that_halts_after_the_culprit_ends_the_rule_check_there(
    pg_url: str, tmp_path: Path
) -> None:
    events = generated(3_000, victim=1_000)
    events[2_500] = dataclasses.replace(events[2_500], data=b"{}")
    outcome = run(
        bundle_of(tmp_path / "halts-later.bundle", events),
        pg_url,
        SqlCheck(EMPTY_NAMES),
        batch_size=500,
    )
    assert isinstance(outcome, Found)
    assert outcome.culprit.event == events[1_000]
    assert outcome.halted is not None
    assert outcome.halted.commit_position == events[2_500].commit_position
    assert outcome.rule == RuleHeld(checked=2, until=events[2_499].commit_position)
    lines = report(outcome)
    assert any("the last state the projection built" in line for line in lines)
    assert any(line.startswith("later in the range the projection halts") for line in lines)

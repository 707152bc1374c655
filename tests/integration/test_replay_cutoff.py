"""The cutoff rule, exactly: a replay is a prefix of `$all`, whatever the timestamps do.

The history is a bundle written here, so timestamps can be equal or go backwards (as they can
across a cluster's leader changes), and streams of another prefix can be mixed in.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zstandard
from psycopg import sql

from repro.bundle import write_bundle
from repro.cutoff import (
    Cutoff,
    ReplayError,
    ToEnd,
    UntilEventId,
    UntilPosition,
    UntilTime,
    take,
)
from repro.history import BundleSource
from repro.replay import ReplayHalted, ReplayRequest, replay
from usersvc.events import UserCreated, encode_user_created, stream_name
from usersvc.records import StoredEvent
from usersvc.settings import load_settings
from usersvc_cli.main import build_parser, run_command

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
# (position, stream, recorded at): equal stamps at 200/300, a stamp going back at 500, and a
# stream of another prefix at 350.
HISTORY = [
    (100, stream_name("a"), T0),
    (200, stream_name("b"), T0 + SECOND),
    (300, stream_name("c"), T0 + SECOND),
    (350, "audit-1", T0 + 2 * SECOND),
    (400, stream_name("d"), T0 + 3 * SECOND),
    (500, stream_name("e"), T0 + SECOND / 2),
    (600, stream_name("f"), T0 + 4 * SECOND),
]


def event(position: int, stream: str, at: datetime) -> StoredEvent:
    name = stream.split("-", 1)[1]
    return StoredEvent(
        position,
        stream,
        0,
        uuid.uuid5(uuid.NAMESPACE_URL, f"cutoff/{position}"),
        "user-created",
        encode_user_created(UserCreated(name, f"Person {name}", at)),
        b"{}",
        "application/json",
        at,
    )


@pytest.fixture
def source(tmp_path: Path) -> BundleSource:
    bundle = tmp_path / "cutoff.bundle"
    write_bundle(bundle, (event(*row) for row in HISTORY), {"source": "test"})
    return BundleSource(bundle)


def time_cutoff(at: datetime) -> Cutoff:
    return UntilTime(at)


def taken(source: BundleSource, cutoff: Cutoff, after: int | None) -> list[int]:
    return [e.commit_position for e in take(source.events(after), cutoff, after=after)]


@pytest.mark.parametrize(
    ("case", "cutoff", "after", "last"),
    [
        ("equal stamps are all in", time_cutoff(T0 + SECOND), None, 300),
        ("between stamps", time_cutoff(T0 + 1.5 * SECOND), None, 300),
        ("an earlier stamp after a later one is in", time_cutoff(T0 + 3 * SECOND), None, 500),
        ("the stamp of the last event takes all", time_cutoff(T0 + 4 * SECOND), None, 600),
        ("the stamp of the first event", time_cutoff(T0), None, 100),
        ("a position includes its event", UntilPosition(400), None, 400),
        ("a position between events", UntilPosition(450), None, 400),
        (
            "an event id includes its event",
            UntilEventId(event(*HISTORY[5]).event_id),
            None,
            500,
        ),
        ("from a position, strictly after it", time_cutoff(T0 + 3 * SECOND), 300, 500),
        ("no cutoff is everything", ToEnd(), None, 600),
    ],
)
def test_the_cutoff_takes_a_prefix_up_to_its_last_event(
    source: BundleSource, case: str, cutoff: Cutoff, after: int | None, last: int
) -> None:
    prefix = [p for p, stream, _ in HISTORY if stream.startswith("user-")]
    expected = [p for p in prefix if (after is None or p > after) and p <= last]
    assert taken(source, cutoff, after) == expected


@pytest.mark.parametrize(
    ("case", "cutoff", "after", "message"),
    [
        (
            "a time before the first event",
            time_cutoff(T0 - SECOND / 10**6),
            None,
            "before the first",
        ),
        (
            "a time after the last event",
            time_cutoff(T0 + 4 * SECOND + SECOND / 10**6),
            None,
            "after the last",
        ),
        (
            "a time before the first event after P",
            time_cutoff(T0 + SECOND),
            300,
            "before the first",
        ),
        (
            "a position before the first event",
            UntilPosition(99),
            None,
            "before the first",
        ),
        (
            "a position after the last event",
            UntilPosition(601),
            None,
            "after the last",
        ),
        (
            "an event of another stream prefix",
            UntilEventId(event(*HISTORY[3]).event_id),
            None,
            "no event with id",
        ),
        ("nothing after the start", ToEnd(), 600, "no events after position 600"),
    ],
)
def test_a_cutoff_outside_the_history_is_refused(
    source: BundleSource, case: str, cutoff: Cutoff, after: int | None, message: str
) -> None:
    with pytest.raises(ReplayError, match=message):
        taken(source, cutoff, after)


def test_a_time_replay_takes_the_prefix_and_skips_other_streams(
    source: BundleSource, pg_url: str, unique: str
) -> None:
    schema = f"cut_{unique}"
    summary = replay(
        source,
        ReplayRequest(
            target_url=pg_url,
            schema=schema,
            checkpoint_name="usersvc-read-model",
            cutoff=time_cutoff(T0 + 3 * SECOND),
        ),
    )
    with psycopg.connect(pg_url) as conn:
        names = conn.execute(
            sql.SQL("SELECT username FROM {} ORDER BY username").format(
                sql.Identifier(schema, "user")
            )
        ).fetchall()
    assert [n for (n,) in names] == ["a", "b", "c", "d", "e"]
    assert (summary.first_position, summary.last_position) == (100, 500)
    assert (summary.applied, summary.skipped) == (5, 0)


@pytest.mark.parametrize("batch_size", [1, 10_000])
def test_a_malformed_event_halts_the_replay_just_before_it_as_the_worker_does(
    tmp_path: Path, pg_url: str, unique: str, batch_size: int
) -> None:
    bad = replace(event(*HISTORY[4]), data=b'{"username": 1}')  # position 400
    history = [event(*row) for row in HISTORY[:4]] + [bad] + [event(*HISTORY[5])]
    bundle = tmp_path / "malformed.bundle"
    write_bundle(bundle, history, {})
    schema = f"halt_{unique}"
    request = ReplayRequest(
        target_url=pg_url, schema=schema, checkpoint_name="w", batch_size=batch_size
    )
    with pytest.raises(ReplayHalted, match=r"commit position 400.*up to position 300"):
        replay(BundleSource(bundle), request)
    with psycopg.connect(pg_url) as conn:
        names = conn.execute(
            sql.SQL("SELECT username FROM {} ORDER BY username").format(
                sql.Identifier(schema, "user")
            )
        ).fetchall()
        manifest = conn.execute(
            sql.SQL("SELECT last_position, events_applied, details FROM {}").format(
                sql.Identifier(schema, "replay_manifest")
            )
        ).fetchall()
    assert [n for (n,) in names] == ["a", "b", "c"]
    assert len(manifest) == 1
    last, applied, details = manifest[0]
    assert (last, applied, details["haltedAt"]) == (300, 3, 400)
    assert details["haltReason"]


def test_the_cli_says_a_halted_replay_stopped_and_exits_1(
    tmp_path: Path, pg_url: str, unique: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("ESDB_CONNECTION_STRING", "esdb://127.0.0.1:1?tls=false")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    bad = replace(event(*HISTORY[1]), data=b"not json")
    bundle = tmp_path / "malformed.bundle"
    write_bundle(bundle, [event(*HISTORY[0]), bad], {})
    argv = ["replay", "--target-database-url", pg_url, "--schema", f"hcli_{unique}"]
    args = build_parser().parse_args([*argv, "--from-bundle", str(bundle)])
    assert run_command(args, load_settings()) == 1
    assert "replay stopped: cannot project event at commit position 200" in caplog.text


@pytest.mark.parametrize(
    "cutoff",
    [UntilPosition(300), time_cutoff(T0 + SECOND), UntilEventId(event(*HISTORY[1]).event_id)],
    ids=["position", "time", "event id"],
)
def test_damage_after_the_cutoff_is_still_refused_and_nothing_is_written(
    tmp_path: Path, pg_url: str, unique: str, cutoff: Cutoff
) -> None:
    bundle = tmp_path / "damaged.bundle"
    # The last event's name differs by one letter of the same length: only the hash can tell.
    last = replace(
        event(*HISTORY[6]), data=event(*HISTORY[6]).data.replace(b"Person f", b"Person g")
    )
    write_bundle(bundle, [event(*row) for row in HISTORY[:6]] + [event(*HISTORY[6])], {})
    honest = zstandard.ZstdDecompressor().stream_reader(bundle.read_bytes()).read()
    forged = honest.replace(event(*HISTORY[6]).data, last.data)
    assert forged != honest
    bundle.write_bytes(zstandard.ZstdCompressor().compress(forged))
    schema = f"dmg_{unique}"
    request = ReplayRequest(target_url=pg_url, schema=schema, checkpoint_name="w", cutoff=cutoff)
    with pytest.raises(ReplayError, match="nothing was written"):
        replay(BundleSource(bundle), request)
    with psycopg.connect(pg_url) as conn:
        exists = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = %s)",
            (schema,),
        ).fetchone()
    assert exists == (False,)

"""Replay, export and snapshot against a real emulator and real PostgreSQL.

The module writes one history of its own (an in-memory emulator, so no other test's events mix
in), with the real worker projecting it; the state of the live read model is captured in the
middle, and replays to that moment must reproduce it exactly.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import zstandard
from esdbclient import EventStoreDBClient, NewEvent, RecordedEvent, StreamState
from psycopg import sql
from pydantic import SecretStr

from esdb_emulator import EmbeddedServer
from repro.bundle import verify_bundle
from repro.cutoff import ReplayError, UntilEventId, UntilPosition, UntilTime
from repro.export import export
from repro.history import BundleSource, EsdbSource, SourceUnavailable
from repro.replay import ReplayRequest, replay
from repro.snapshot import take_snapshot
from tests.fixtures.history import schema_exists
from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.events import STREAM_PREFIX, UserCreated, encode_user_created, stream_name
from usersvc.settings import Settings
from usersvc_cli.emulator_command import import_bundle
from worker.migrator import migrate
from worker.runner import run

WORKER = "usersvc-read-model"
ROWS = sql.SQL(
    'SELECT username, "createdAt", "fullName", "eventId", "commitPosition" FROM {}'
    " ORDER BY username"
)


@dataclass
class History:
    esdb_url: str
    events: list[RecordedEvent]  # the user-created events, in $all order
    live_at_middle: list[tuple[Any, ...]]  # the live read model after events[:MIDDLE]
    live_schema: str


MIDDLE = 12
TOTAL = 30


def rows(pg_url: str, schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(ROWS.format(sql.Identifier(schema, "user"))).fetchall()


def append_users(client: EventStoreDBClient, names: list[str]) -> None:
    for name in names:
        client.append_to_stream(
            stream_name(name),
            current_version=StreamState.NO_STREAM,
            events=NewEvent(
                type="user-created",
                data=encode_user_created(UserCreated(name, f"Name of {name}", _now())),
            ),
        )
    # An event of another kind in a user stream is skipped by the projection, by design.
    client.append_to_stream(
        stream_name(names[0]), current_version=0, events=NewEvent(type="user-renamed", data=b"{}")
    )


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def history(pg_url: str) -> Iterator[History]:
    live_schema = "replay_live"
    migrate(pg_url, live_schema)
    settings = Settings(
        esdb_connection_string="esdb://unused:1?tls=false",
        database_url=SecretStr(pg_url),
        database_schema=live_schema,
    )
    with EmbeddedServer() as server:
        settings = settings.model_copy(update={"esdb_connection_string": server.connection_string})
        client = EventStoreDBClient(server.connection_string)
        stop = threading.Event()
        worker = threading.Thread(target=run, args=(settings,), kwargs={"stop": stop})
        worker.start()
        try:
            append_users(client, [f"early-{i:02d}" for i in range(MIDDLE)])
            middle = _user_events(client)
            wait_for_checkpoint(pg_url, live_schema, WORKER, int(middle[-1].commit_position or 0))
            live_at_middle = rows(pg_url, live_schema)
            append_users(client, [f"late-{i:02d}" for i in range(TOTAL - MIDDLE)])
            events = _user_events(client)
            wait_for_checkpoint(pg_url, live_schema, WORKER, int(events[-1].commit_position or 0))
        finally:
            stop.set()
            worker.join(30)
        client.close()
        assert len(live_at_middle) == MIDDLE
        yield History(server.connection_string, events, live_at_middle, live_schema)


def _user_events(client: EventStoreDBClient) -> list[RecordedEvent]:
    return [
        e
        for e in client.read_all(filter_include=[STREAM_PREFIX + ".*"], filter_by_stream_name=True)
        if e.type == "user-created"
    ]


def do_replay(source: Any, pg_url: str, schema: str, **kwargs: Any) -> Any:
    return replay(
        source, ReplayRequest(target_url=pg_url, schema=schema, checkpoint_name=WORKER, **kwargs)
    )


def esdb(history: History) -> EsdbSource:
    return EsdbSource(history.esdb_url)


def test_replay_to_a_time_equals_the_live_model_as_it_stood_then(
    history: History, pg_url: str, unique: str
) -> None:
    moment = history.events[MIDDLE - 1].recorded_at
    assert moment is not None
    summary = do_replay(esdb(history), pg_url, f"r_{unique}", cutoff=UntilTime(moment))
    assert rows(pg_url, f"r_{unique}") == history.live_at_middle
    assert summary.applied == MIDDLE
    # The first user-renamed event comes after the cutoff.
    assert summary.skipped == 0
    assert summary.last_position == history.events[MIDDLE - 1].commit_position


def test_replay_to_a_position_and_to_an_event_id_likewise(
    history: History, pg_url: str, unique: str
) -> None:
    last = history.events[MIDDLE - 1]
    do_replay(
        esdb(history),
        pg_url,
        f"p_{unique}",
        cutoff=UntilPosition(last.commit_position),
    )
    do_replay(esdb(history), pg_url, f"i_{unique}", cutoff=UntilEventId(last.id))
    assert rows(pg_url, f"p_{unique}") == history.live_at_middle
    assert rows(pg_url, f"i_{unique}") == history.live_at_middle


def test_a_full_replay_equals_the_live_model_and_two_replays_agree(
    history: History, pg_url: str, unique: str
) -> None:
    first = do_replay(esdb(history), pg_url, f"a_{unique}")
    second = do_replay(esdb(history), pg_url, f"b_{unique}")
    assert rows(pg_url, f"a_{unique}") == rows(pg_url, history.live_schema)
    assert first.checksum == second.checksum
    assert (first.applied, first.skipped) == (TOTAL, 2)  # user-renamed: skipped by design


def test_export_import_replay_round_trip(
    history: History, pg_url: str, unique: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "history.bundle"
    exported = export(esdb(history), bundle)
    assert exported["count"] == TOTAL + 2  # two user-renamed events
    direct = do_replay(BundleSource(bundle), pg_url, f"d_{unique}")
    with EmbeddedServer() as copy:
        assert copy.store is not None
        assert import_bundle(copy.store, bundle) == TOTAL + 2
        via_import = do_replay(EsdbSource(copy.connection_string), pg_url, f"c_{unique}")
    reference = do_replay(esdb(history), pg_url, f"o_{unique}")
    assert direct.checksum == via_import.checksum == reference.checksum


def test_export_redacts_personal_fields_deterministically(
    history: History, pg_url: str, unique: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "redacted.bundle"
    export(esdb(history), bundle, redact_fields=["fullName"])
    assert verify_bundle(bundle)["redacted"] == ["fullName"]
    do_replay(BundleSource(bundle), pg_url, f"x_{unique}")
    names = {row[2] for row in rows(pg_url, f"x_{unique}")}
    assert all(name.startswith("redacted-") for name in names)
    assert len(names) == TOTAL  # distinct values stay distinct


def test_snapshot_plus_the_rest_equals_a_full_replay(
    history: History, pg_url: str, unique: str, tmp_path: Path
) -> None:
    middle = history.events[MIDDLE - 1]
    do_replay(
        esdb(history),
        pg_url,
        f"s_{unique}",
        cutoff=UntilPosition(middle.commit_position),
    )
    snapshot = tmp_path / "middle.snapshot"
    take_snapshot(pg_url, f"s_{unique}", WORKER, snapshot)
    restored = do_replay(esdb(history), pg_url, f"t_{unique}", snapshot=snapshot)
    full = do_replay(esdb(history), pg_url, f"f_{unique}")
    assert restored.applied == TOTAL - MIDDLE
    assert restored.checksum == full.checksum


def test_a_target_with_data_is_refused_unless_forced(
    history: History, pg_url: str, unique: str
) -> None:
    target = f"n_{unique}"
    first = do_replay(
        esdb(history),
        pg_url,
        target,
        cutoff=UntilPosition(history.events[0].commit_position),
    )
    with pytest.raises(ReplayError, match="already holds data"):
        do_replay(esdb(history), pg_url, target)
    assert len(rows(pg_url, target)) == 1
    forced = do_replay(esdb(history), pg_url, target, force=True)
    assert forced.applied == TOTAL
    assert forced.checksum != first.checksum


@pytest.mark.parametrize(
    ("case", "cutoff_of", "message"),
    [
        (
            "time before the first event",
            lambda h: UntilTime(h.events[0].recorded_at - timedelta(seconds=1)),
            "before the first event",
        ),
        (
            "time after the last event",
            lambda h: UntilTime(h.events[-1].recorded_at + timedelta(days=1)),
            "after the last event",
        ),
        (
            "position before the first event",
            lambda h: UntilPosition(1),
            "before the first event",
        ),
        (
            "position after the last event",
            lambda h: UntilPosition(h.events[-1].commit_position + 10**9),
            "after the last event",
        ),
        (
            "unknown event id",
            lambda h: UntilEventId(uuid.uuid4()),
            "no event with id",
        ),
    ],
)
def test_a_bad_cutoff_is_refused_and_writes_nothing(
    history: History, pg_url: str, unique: str, case: str, cutoff_of: Any, message: str
) -> None:
    with pytest.raises(ReplayError, match=message):
        do_replay(esdb(history), pg_url, f"e_{unique}", cutoff=cutoff_of(history))
    assert not schema_exists(pg_url, f"e_{unique}")


def test_an_unreachable_source_is_refused() -> None:
    with pytest.raises(SourceUnavailable, match="cannot read EventStoreDB"):
        EsdbSource("esdb://127.0.0.1:1?tls=false")


def test_an_unreachable_target_is_refused(history: History) -> None:
    with pytest.raises(ReplayError, match="cannot connect to the target"):
        do_replay(esdb(history), "postgresql://nobody@127.0.0.1:1/none", "anything")


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_bundle_is_refused_and_nothing_is_written(
    history: History, tmp_path: Path, pg_url: str, unique: str, damage: str
) -> None:
    bundle = tmp_path / "damaged.bundle"
    export(esdb(history), bundle)
    raw = zstandard.ZstdDecompressor().stream_reader(bundle.read_bytes()).read()
    if damage == "truncated":
        raw = raw[: len(raw) - 40]
    else:
        middle = len(raw) // 2
        raw = raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1 :]
    bundle.write_bytes(zstandard.ZstdCompressor().compress(raw))
    with pytest.raises(ReplayError, match=f"{damage}.*nothing was written"):
        do_replay(BundleSource(bundle), pg_url, f"d_{unique}")
    assert not schema_exists(pg_url, f"d_{unique}")


def test_a_snapshot_of_another_schema_version_is_refused(
    history: History, pg_url: str, unique: str, tmp_path: Path
) -> None:
    snapshot = tmp_path / "old.snapshot"
    take_snapshot(pg_url, history.live_schema, WORKER, snapshot)
    lines = zstandard.ZstdDecompressor().stream_reader(snapshot.read_bytes()).read().split(b"\n")
    header = orjson.loads(lines[0])
    header["schemaVersion"] = 1
    lines[0] = orjson.dumps(header)
    snapshot.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines)))
    with pytest.raises(ReplayError, match="schema version 1"):
        do_replay(esdb(history), pg_url, f"v_{unique}", snapshot=snapshot)
    assert not schema_exists(pg_url, f"v_{unique}")

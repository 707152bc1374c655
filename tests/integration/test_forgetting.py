"""Forgetting reaches every copy usersvc makes: export and replay from EventStoreDB honour stream
truncation (`$tb`) although `$all` still holds the truncated events until a scavenge; a scavenge
of the emulator (its operation, or its command) removes them from its files.

Each test writes into an emulator of its own over real gRPC (esdbclient), in memory (on disk for
the tests that search its files), so that `$all` holds exactly its history. The tests hold
whether `$all` still yields truncated events (before a scavenge) or no longer does (after one):
they assert on what the copies hold, never on `$all` itself, except the first one, which shows
what the copies are protected from.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zstandard
from esdbclient import EventStoreDBClient, StreamState
from psycopg import sql

from esdb_emulator import EmbeddedServer
from repro.bundle import read_bundle
from repro.cutoff import ReplayError, UntilPosition
from repro.export import export
from repro.history import EsdbSource
from repro.replay import ReplayRequest, replay
from tests.fixtures.lifecycle import Life
from tests.fixtures.scavenges import scavenge
from usersvc.records import StoredEvent
from usersvc_cli.emulator_command import import_bundle

WORKER = "usersvc-read-model"
SECRET = "Zebulon Quartermaine-Oyelaran"  # the deleted user's full name, searched for in bytes
LATER = "Zebulon Q. Oyelaran"


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as emulator:
        yield emulator


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[EventStoreDBClient]:
    connection = EventStoreDBClient(server.connection_string)
    yield connection
    connection.close()


def deleted_user(client: EventStoreDBClient, name: str = "zeb") -> Life:
    """`name` created, renamed and deleted, between two other users who stay."""
    Life(client, "before").create("Anna Before")
    life = Life(client, name)
    life.create(SECRET)
    life.change(LATER)
    life.delete()
    Life(client, "after").create("Otto After")
    return life


def bundle_bytes(path: Path) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()


def of_stream(events: list[StoredEvent], stream: str) -> list[tuple[int, str]]:
    return [(e.revision, e.type) for e in events if e.stream == stream]


def user_rows(pg_url: str, schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            sql.SQL('SELECT username, "fullName", revision FROM {} ORDER BY username').format(
                sql.Identifier(schema, "user")
            )
        ).fetchall()


def do_replay(source: Any, pg_url: str, schema: str, **kwargs: Any) -> Any:
    return replay(
        source, ReplayRequest(target_url=pg_url, schema=schema, checkpoint_name=WORKER, **kwargs)
    )


def test_all_still_yields_truncated_events_before_a_scavenge(
    client: EventStoreDBClient,
) -> None:
    life = deleted_user(client)
    in_all = [e.stream_position for e in client.read_all() if e.stream_name == life.stream]
    in_stream = [e.stream_position for e in client.get_stream(life.stream)]
    assert in_all == [0, 1, 2]
    assert in_stream == [2]


def test_an_export_after_a_deletion_holds_only_the_deletion_event_of_the_user(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    life = deleted_user(client)
    bundle = tmp_path / "after-deletion.bundle"
    export(EsdbSource(server.connection_string), bundle)
    events = list(read_bundle(bundle))
    assert of_stream(events, life.stream) == [(2, "user-deleted")]
    assert [e.stream for e in events if e.type == "user-created"] == ["user-before", "user-after"]


def test_an_export_after_a_deletion_holds_none_of_the_users_personal_data(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    deleted_user(client)
    bundle = tmp_path / "after-deletion.bundle"
    export(EsdbSource(server.connection_string), bundle)
    raw = bundle_bytes(bundle)
    assert b"Anna Before" in raw  # the search does find full names that are there
    assert SECRET.encode() not in raw
    assert LATER.encode() not in raw


def test_an_export_to_a_moment_before_the_deletion_still_holds_nothing_of_the_user(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    life = deleted_user(client)
    bundle = tmp_path / "before-deletion.bundle"
    export(EsdbSource(server.connection_string), bundle, cutoff=UntilPosition(life.positions[1]))
    raw = bundle_bytes(bundle)
    assert SECRET.encode() not in raw
    assert LATER.encode() not in raw


def test_a_new_life_after_a_deletion_is_exported_from_the_deletion_on(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    life = deleted_user(client)
    life.create("Zeb Again")
    bundle = tmp_path / "new-life.bundle"
    export(EsdbSource(server.connection_string), bundle)
    assert of_stream(list(read_bundle(bundle)), life.stream) == [
        (2, "user-deleted"),
        (3, "user-created"),
    ]


def test_soft_deleted_and_tombstoned_streams_are_not_copied(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    soft, hard = Life(client, "soft"), Life(client, "hard")
    soft.create("Sophie Soft")
    hard.create("Hardy Hard")
    Life(client, "stays").create("Stacey Stays")
    client.delete_stream(soft.stream, current_version=0)
    client.tombstone_stream(hard.stream, current_version=0)
    bundle = tmp_path / "deleted-streams.bundle"
    export(EsdbSource(server.connection_string), bundle)
    events = list(read_bundle(bundle))
    assert [e.stream for e in events if e.type == "user-created"] == ["user-stays"]
    assert b"Sophie Soft" not in bundle_bytes(bundle)
    assert b"Hardy Hard" not in bundle_bytes(bundle)


def test_metadata_that_lifts_the_truncation_makes_the_events_copied_again(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    life = deleted_user(client)
    client.set_stream_metadata(life.stream, metadata={}, current_version=StreamState.ANY)
    bundle = tmp_path / "lifted.bundle"
    export(EsdbSource(server.connection_string), bundle)
    assert [revision for revision, _ in of_stream(list(read_bundle(bundle)), life.stream)] == [
        0,
        1,
        2,
    ]


def test_a_replay_from_esdb_after_a_deletion_shows_nothing_of_the_user(
    server: EmbeddedServer, client: EventStoreDBClient, pg_url: str, unique: str
) -> None:
    life = deleted_user(client)
    summary = do_replay(EsdbSource(server.connection_string), pg_url, f"fg_{unique}")
    assert user_rows(pg_url, f"fg_{unique}") == [
        ("after", "Otto After", 0),
        ("before", "Anna Before", 0),
    ]
    # Only the deletion event of the user was read: 3 events, not 5.
    assert (summary.applied, summary.last_position) == (3, client.get_commit_position())
    assert life.positions[2] < summary.last_position


def test_a_replay_to_a_moment_before_the_deletion_does_not_bring_the_user_back(
    server: EmbeddedServer, client: EventStoreDBClient, pg_url: str, unique: str
) -> None:
    life = deleted_user(client)
    do_replay(
        EsdbSource(server.connection_string),
        pg_url,
        f"fb_{unique}",
        cutoff=UntilPosition(life.positions[1]),
    )
    assert user_rows(pg_url, f"fb_{unique}") == [("before", "Anna Before", 0)]


class DeletingWhileRead(EsdbSource):
    """An EventStoreDB source during whose read `victim` is deleted, once `after_events` events
    have been yielded (a deletion that lands while a long export or replay runs)."""

    def __init__(self, url: str, victim: Life, after_events: int) -> None:
        super().__init__(url)
        self.victim = victim
        self.after_events = after_events

    def events(self, after: int | None) -> Iterator[StoredEvent]:
        for count, event in enumerate(super().events(after), start=1):
            yield event
            if count == self.after_events:
                self.victim.delete()


def test_an_export_during_which_a_copied_user_is_deleted_leaves_no_file(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    victim = Life(client, "victim")
    victim.create(SECRET)
    Life(client, "other").create("Olga Other")
    source = DeletingWhileRead(server.connection_string, victim, after_events=1)
    with pytest.raises(ReplayError, match="'user-victim' was truncated"):
        export(source, tmp_path / "raced.bundle")
    assert list(tmp_path.iterdir()) == []


def test_an_export_cut_before_a_deletion_made_during_it_is_refused_too(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    victim = Life(client, "victim")
    victim.create(SECRET)
    Life(client, "other").create("Olga Other")
    source = DeletingWhileRead(server.connection_string, victim, after_events=1)
    with pytest.raises(ReplayError, match="run it again"):
        export(source, tmp_path / "raced.bundle", cutoff=UntilPosition(victim.positions[0]))
    assert list(tmp_path.iterdir()) == []


def test_a_replay_during_which_a_copied_user_is_deleted_writes_nothing(
    server: EmbeddedServer, client: EventStoreDBClient, pg_url: str, unique: str
) -> None:
    victim = Life(client, "victim")
    victim.create(SECRET)
    Life(client, "other").create("Olga Other")
    source = DeletingWhileRead(server.connection_string, victim, after_events=1)
    with pytest.raises(ReplayError, match="'user-victim' was truncated"):
        do_replay(source, pg_url, f"fr_{unique}")
    with psycopg.connect(pg_url) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            (f"fr_{unique}",),
        ).fetchone()
    assert exists == (0,)


def test_a_source_that_never_read_has_nothing_to_recheck(server: EmbeddedServer) -> None:
    source = EsdbSource(server.connection_string)
    source.check_forgotten()
    source.close()


def test_a_bundle_exported_after_a_deletion_imports_into_the_emulator(
    server: EmbeddedServer, client: EventStoreDBClient, tmp_path: Path
) -> None:
    deleted_user(client)
    bundle = tmp_path / "after-deletion.bundle"
    export(EsdbSource(server.connection_string), bundle)
    with EmbeddedServer() as copy:
        assert copy.store is not None
        assert import_bundle(copy.store, bundle) == 3
        copied = EventStoreDBClient(copy.connection_string)
        try:
            assert [(e.stream_position, e.type) for e in copied.get_stream("user-zeb")] == [
                (2, "user-deleted")
            ]
        finally:
            copied.close()


def files_holding(directory: Path, text: str) -> list[str]:
    """The files under `directory` whose bytes contain `text`."""
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and text.encode() in path.read_bytes()
    )


def test_after_a_deletion_and_a_scavenge_the_emulators_files_hold_nothing_of_the_user(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "esdb"
    with EmbeddedServer(data_dir) as server:
        client = EventStoreDBClient(server.connection_string)
        try:
            deleted_user(client)
            assert files_holding(data_dir, SECRET) == ["events.log"]  # the search finds it
            completed = scavenge(server.connection_string, client)
        finally:
            client.close()
        assert completed["result"] == "Success"
        assert files_holding(data_dir, SECRET) == []
        assert files_holding(data_dir, LATER) == []
        assert files_holding(data_dir, "Anna Before") == ["events.log"]


def test_the_scavenge_command_on_a_stopped_emulator_removes_the_deleted_users_name(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "esdb"
    with EmbeddedServer(data_dir) as server:
        client = EventStoreDBClient(server.connection_string)
        try:
            deleted_user(client)
        finally:
            client.close()
    done = subprocess.run(
        [sys.executable, "-m", "esdb_emulator", "scavenge", "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert files_holding(data_dir, SECRET) == []
    assert files_holding(data_dir, LATER) == []

"""`usersvc events check` as a user runs it, on a real history written through real gRPC into an
emulator of each test's own, and on bundles: a history the code reads passes with a summary; one
with an event it cannot read fails naming that event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from esdb_emulator import EmbeddedServer
from repro.bundle import write_bundle
from repro.check import check_events
from repro.export import export
from repro.history import EsdbSource
from tests.fixtures.events import created, malformed
from tests.fixtures.lifecycle import Life
from usersvc.settings import load_settings
from usersvc_cli.main import build_parser, run_command


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as emulator:
        yield emulator


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[EventStoreDBClient]:
    connection = EventStoreDBClient(server.connection_string)
    yield connection
    connection.close()


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "absent.toml"))


def usersvc(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return run_command(args, load_settings())


def real_history(client: EventStoreDBClient) -> None:
    """Two lives of one user (the first deleted), another user renamed, an event of another
    type, and a user-created without schemaVersion (as the original service wrote it)."""
    zed = Life(client, "zed")
    zed.create("Zed One")
    zed.change("Zed Two")
    zed.delete()
    zed.create("Zed Three")
    amy = Life(client, "amy")
    amy.create("Amy One")
    amy.change("Amy Two")
    client.append_to_stream(
        amy.stream, current_version=1, events=[NewEvent(type="user-renamed", data=b"{}")]
    )
    client.append_to_stream(
        "user-old",
        current_version=StreamState.NO_STREAM,
        events=[
            NewEvent(
                type="user-created",
                data=b'{"username":"old","fullName":"Old Timer",'
                b'"openedAt":"2020-01-01T00:00:00.000Z"}',
            )
        ],
    )


def append_raw(
    client: EventStoreDBClient, stream: str, type_: str, data: bytes, **kw: bytes
) -> int:
    return client.append_to_stream(
        stream,
        current_version=StreamState.ANY,
        events=[NewEvent(type=type_, data=data, metadata=kw.get("metadata", b""))],
    )


def test_a_real_history_passes_with_a_summary(
    server: EmbeddedServer, client: EventStoreDBClient, capsys: pytest.CaptureFixture[str]
) -> None:
    real_history(client)
    assert usersvc("events", "check", "--source-esdb", server.connection_string) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "events check passed",
        f"  source:   {server.connection_string}",
        "  events:   5 read (user-created v1: 3, user-deleted v1: 1,"
        " user-full-name-changed v1: 1), 1 of other types skipped",
    ]


def test_a_bundle_of_the_real_history_passes_with_the_same_counts(
    server: EmbeddedServer,
    client: EventStoreDBClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_history(client)
    bundle = tmp_path / "history.bundle"
    export(EsdbSource(server.connection_string), bundle)
    assert usersvc("events", "check", "--from-bundle", str(bundle)) == 0
    assert capsys.readouterr().out.splitlines()[2] == (
        "  events:   5 read (user-created v1: 3, user-deleted v1: 1,"
        " user-full-name-changed v1: 1), 1 of other types skipped"
    )


def test_an_undecodable_event_fails_the_check_naming_it(
    server: EmbeddedServer, client: EventStoreDBClient, caplog: pytest.LogCaptureFixture
) -> None:
    real_history(client)
    position = append_raw(client, "user-bad", "user-created", b'{"username":"bad"}')
    Life(client, "later").create("Read Never")
    with caplog.at_level(logging.ERROR, logger="usersvc.repro"):
        assert usersvc("events", "check", "--source-esdb", server.connection_string) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"events check failed: event at commit position {position} in stream 'user-bad'"
        " (type user-created, revision 0) cannot be read: fullName None is missing or invalid"
        " (6 events before it were read)"
    ]


def test_an_event_of_a_newer_schema_version_than_the_code_fails_the_check(
    server: EmbeddedServer, client: EventStoreDBClient
) -> None:
    zed = Life(client, "zed")
    zed.create("Zed One")
    position = append_raw(
        client,
        zed.stream,
        "user-full-name-changed",
        b'{"username":"zed","name":{"given":"Zed"},"changedAt":"2025-01-01T00:00:00.000Z"}',
        metadata=b'{"schemaVersion":2}',
    )
    source = EsdbSource(server.connection_string)
    summary = check_events(source)
    source.close()
    assert summary.unreadable is not None
    assert summary.unreadable.describe() == (
        f"event at commit position {position} in stream 'user-zed'"
        " (type user-full-name-changed, revision 1) cannot be read:"
        " schemaVersion 2 is newer than this code reads (1)"
    )


def test_an_event_whose_username_is_not_its_streams_fails_the_check(
    server: EmbeddedServer, client: EventStoreDBClient
) -> None:
    Life(client, "amy").create("Amy One")
    append_raw(
        client,
        "user-eve",
        "user-deleted",
        b'{"username":"amy","deletedAt":"2025-01-01T00:00:00.000Z"}',
    )
    source = EsdbSource(server.connection_string)
    summary = check_events(source)
    source.close()
    assert summary.unreadable is not None
    assert summary.unreadable.reason == "username 'amy' does not match the stream name"


def test_an_undecodable_event_in_a_bundle_fails_the_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = tmp_path / "bad.bundle"
    write_bundle(bundle, [created(10, "amy"), malformed(20, "bob")], {"source": "test"})
    with caplog.at_level(logging.ERROR, logger="usersvc.repro"):
        assert usersvc("events", "check", "--from-bundle", str(bundle)) == 1
    assert "event at commit position 20 in stream 'user-bob'" in caplog.records[0].getMessage()


def test_an_empty_history_passes(
    server: EmbeddedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usersvc("events", "check", "--source-esdb", server.connection_string) == 0
    assert "  events:   0 read (none), 0 of other types skipped" in capsys.readouterr().out


def test_a_missing_bundle_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="usersvc.repro"):
        code = usersvc("events", "check", "--from-bundle", str(tmp_path / "absent.bundle"))
    assert code == 2
    assert caplog.records[0].getMessage().startswith("events check refused: ")

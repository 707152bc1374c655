"""The emulator itself: restart with the same data directory, torn tails, damage before the tail,
import of recorded events."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, StreamState

from esdb_emulator import EmbeddedServer
from esdb_emulator.model import BadRequest
from esdb_emulator.model.wal import FILE_NAME, LOCK_NAME, LogDamaged
from tests.fixtures.damaged_logs import damage_frame, data_files, fill, tear_last_frame
from tests.fixtures.esdb_events import event, events, imported

pytestmark = pytest.mark.emulator


def snapshot(url: str) -> list[tuple[int, str, int, uuid.UUID, bytes]]:
    client = EventStoreDBClient(url)
    try:
        return [
            (e.commit_position, e.stream_name, e.stream_position, e.id, e.data)
            for e in client.read_all(filter_exclude=[])
        ]
    finally:
        client.close()


def test_restart_keeps_positions_revisions_and_the_port(
    own_emulator: EmbeddedServer, stream: str
) -> None:
    client = EventStoreDBClient(own_emulator.connection_string)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3))
    client.delete_stream(f"{stream}", current_version=2)
    client.append_to_stream(f"{stream}-b", current_version=StreamState.ANY, events=events(2))
    client.close()
    before, port = snapshot(own_emulator.connection_string), own_emulator.port
    own_emulator.stop()
    own_emulator.start()
    assert own_emulator.port == port
    assert snapshot(own_emulator.connection_string) == before
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        with pytest.raises(Exception, match=r"not found|NotFound"):
            client.get_stream(stream)
        position = client.append_to_stream(f"{stream}-b", current_version=1, events=event())
        assert position > before[-1][0]
    finally:
        client.close()


def test_a_torn_tail_is_cut_and_earlier_appends_survive(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path)
    with server:
        client = EventStoreDBClient(server.connection_string)
        client.append_to_stream("torn", current_version=StreamState.NO_STREAM, events=events(2))
        client.close()
        before = snapshot(server.connection_string)
    log_file = tmp_path / "events.log"
    with log_file.open("ab") as file:
        file.write(b"ESL1\xff\x00\x00\x00garbage")
    with server:
        assert snapshot(server.connection_string) == before
        client = EventStoreDBClient(server.connection_string)
        assert client.append_to_stream("torn", current_version=1, events=event()) > before[-1][0]
        client.close()


def test_a_torn_last_frame_is_cut_and_new_positions_go_above_it(tmp_path: Path) -> None:
    positions = fill(tmp_path, 200)
    server = EmbeddedServer(tmp_path)
    with server:
        before = snapshot(server.connection_string)
    torn = tear_last_frame(tmp_path)
    assert [r.position for r in torn.records] == positions[-1:]
    with server:
        assert snapshot(server.connection_string) == before[:-1]
        client = EventStoreDBClient(server.connection_string)
        try:
            # The same size as the lost event: without a jump it would get the same position.
            position = client.append_to_stream(
                "s-199", current_version=StreamState.NO_STREAM, events=event(n=1200)
            )
        finally:
            client.close()
    assert position > positions[-1]


def test_a_damaged_frame_before_the_tail_stops_the_start_naming_the_file_and_offset(
    tmp_path: Path,
) -> None:
    fill(tmp_path, 200)
    damaged = damage_frame(tmp_path, 100)
    files = data_files(tmp_path)
    server = EmbeddedServer(tmp_path)
    for _ in range(2):  # a refused start lets go of the directory: the next one is refused alike
        with pytest.raises(LogDamaged) as refused:
            server.start()
        assert refused.value.offset == damaged.offset
        assert f"{tmp_path / FILE_NAME} is damaged at byte offset {damaged.offset}" in str(
            refused.value
        )
    files.pop(LOCK_NAME)
    assert {name: data for name, data in data_files(tmp_path).items() if name != LOCK_NAME} == files


def test_imported_events_keep_their_positions_ids_and_times(
    own_emulator: EmbeddedServer, unique: str
) -> None:
    assert own_emulator.store is not None
    stream = f"imported-{unique}"
    bundle = [imported(10_000_000 + n * 100, stream, n) for n in range(3)]
    assert own_emulator.store.import_events(bundle) == 3
    client = EventStoreDBClient(own_emulator.connection_string)
    try:
        read = client.get_stream(stream)
        assert [(e.commit_position, e.id, e.stream_position) for e in read] == [
            (b.position, b.event_id, b.revision) for b in bundle
        ]
        assert read[0].recorded_at == bundle[0].recorded_at
        assert client.append_to_stream(stream, current_version=2, events=event()) > 10_000_200
    finally:
        client.close()


def test_an_import_below_the_head_or_out_of_order_writes_nothing(
    own_emulator: EmbeddedServer, unique: str
) -> None:
    store = own_emulator.store
    assert store is not None
    head = store.last_position()
    with pytest.raises(BadRequest, match="not after"):
        store.import_events([imported(head + 100, f"a-{unique}", 0), imported(head, "b", 0)])
    with pytest.raises(BadRequest, match="continues at revision 1"):
        store.import_events(
            [imported(head + 100, f"a-{unique}", 0), imported(head + 200, f"a-{unique}", 2)]
        )
    assert store.last_position() == head

"""The emulator's commands: `python -m esdb_emulator` serves until SIGTERM and exits 0, and
refuses a damaged log in one line; `usersvc emulator --import FILE` loads a usersvc bundle first
(all of it, or nothing); `scavenge` and `salvage` work on a stopped emulator's data."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, StreamState

from esdb_emulator import Store
from repro.bundle import write_bundle
from repro.bundle_format import EVENT
from tests.fixtures.bundles import assemble, frames, raw_content, rewrite
from tests.fixtures.damaged_logs import damage_frame, data_files, fill, tear_last_frame
from tests.fixtures.esdb_events import events
from tests.fixtures.processes import free_port, signal_other_thread, wait_for_line
from usersvc.records import StoredEvent

pytestmark = pytest.mark.emulator

EMULATOR = [sys.executable, "-m", "esdb_emulator"]
USERSVC_EMULATOR = [sys.executable, "-m", "usersvc_cli.main", "emulator"]
STOP_TIMEOUT = 60


@contextmanager
def serving(command: Sequence[str]) -> Iterator[EventStoreDBClient]:
    """Run `command` (with --port added) until it serves; yield a client; stop it with SIGTERM
    and require exit status 0."""
    port = free_port()
    with subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE) as process:
        try:
            wait_for_line(process, "serving esdb://")
            client = EventStoreDBClient(f"esdb://127.0.0.1:{port}?tls=false")
            try:
                yield client
            finally:
                client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                # Generous: closing the log syncs the disk, slow when other test runs share it.
                code = process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
    assert code == 0


def stored(position: int, stream: str, revision: int) -> StoredEvent:
    return StoredEvent(
        commit_position=position,
        stream=stream,
        revision=revision,
        event_id=uuid.uuid4(),
        type="user-created",
        data=b'{"n":1}',
        metadata=b"{}",
        content_type="application/json",
        recorded_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    )


@pytest.mark.parametrize("storage", ["--mem", "--data-dir"])
def test_the_command_serves_and_stops_cleanly_on_sigterm(tmp_path: Path, storage: str) -> None:
    argv = [*EMULATOR, storage, *([str(tmp_path)] if storage == "--data-dir" else [])]
    with serving(argv) as client:
        position = client.append_to_stream(
            "cli", current_version=StreamState.NO_STREAM, events=events(1)
        )
    assert position > 0


@pytest.mark.skipif(sys.platform != "linux", reason="sends a signal to one thread (Linux tgkill)")
def test_a_sigterm_taken_by_another_thread_still_stops_the_command() -> None:
    # The kernel gives a process's signal to any of its threads, often one of grpc's; the main
    # thread must still notice. Here it goes to a thread other than the main one, every time.
    with subprocess.Popen([*EMULATOR, "--mem", "--port", "0"], stderr=subprocess.PIPE) as process:
        try:
            wait_for_line(process, "serving esdb://")
            signal_other_thread(process.pid, signal.SIGTERM)
            code = process.wait(STOP_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 0


def test_the_standalone_command_reads_no_bundles(tmp_path: Path) -> None:
    argv = [*EMULATOR, "--mem", "--import", str(tmp_path / "b.bundle")]
    refused = subprocess.run(argv, check=False, capture_output=True, timeout=60)
    assert refused.returncode == 2


def test_usersvc_emulator_serves_an_imported_bundle_as_recorded(tmp_path: Path) -> None:
    bundle = tmp_path / "history.bundle"
    recorded = [stored(5_000 + 100 * n, "user-ann", n) for n in range(3)]
    write_bundle(bundle, recorded, {"source": "test"})
    with serving([*USERSVC_EMULATOR, "--mem", "--import", str(bundle)]) as client:
        read = client.get_stream("user-ann")
    assert [(e.commit_position, e.stream_position, e.id, e.recorded_at) for e in read] == [
        (e.commit_position, e.revision, e.event_id, e.recorded_at) for e in recorded
    ]


def test_a_failing_import_exits_1_without_serving_and_writes_nothing(tmp_path: Path) -> None:
    bundle = tmp_path / "gap.bundle"
    # Revision 0, then 2: the stream would have a gap, so the whole import is refused.
    write_bundle(
        bundle, [stored(5_000, "user-bob", 0), stored(5_100, "user-bob", 2)], {"source": "test"}
    )
    data_dir = tmp_path / "data"
    argv = [*USERSVC_EMULATOR, "--port", "0", "--data-dir", str(data_dir), "--import", str(bundle)]
    failed = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "import of" in failed.stderr
    assert "serving" not in failed.stderr
    store = Store(data_dir)
    try:
        assert store.last_position() < 5_000
    finally:
        store.close()


SCAVENGE = [*EMULATOR, "scavenge", "--data-dir"]


def test_the_scavenge_command_removes_truncated_events_of_a_stopped_emulator(
    tmp_path: Path,
) -> None:
    with serving([*EMULATOR, "--data-dir", str(tmp_path)]) as client:
        client.append_to_stream("cut", current_version=StreamState.NO_STREAM, events=events(3))
        client.set_stream_metadata("cut", metadata={"$tb": 2}, current_version=StreamState.ANY)
        before = [(e.stream_position, e.commit_position) for e in client.get_stream("cut")]
    done = subprocess.run(
        [*SCAVENGE, str(tmp_path)], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    # The seed event, the three, and the metadata: two of them go.
    assert done.stdout.startswith(f"scavenged {tmp_path}: removed 2 of 5 events, ")
    with serving([*EMULATOR, "--data-dir", str(tmp_path)]) as client:
        stream = [(e.stream_position, e.commit_position) for e in client.get_stream("cut")]
        revisions = [e.stream_position for e in client.read_all() if e.stream_name == "cut"]
    assert (stream, revisions) == (before, [2])


def test_the_scavenge_command_is_refused_while_an_emulator_holds_the_directory(
    tmp_path: Path,
) -> None:
    with serving([*EMULATOR, "--data-dir", str(tmp_path)]):
        refused = subprocess.run(
            [*SCAVENGE, str(tmp_path)], check=False, capture_output=True, text=True, timeout=60
        )
    assert refused.returncode == 1
    assert "in use by another emulator" in refused.stderr


def test_the_scavenge_command_is_refused_where_there_is_no_emulator_data(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*SCAVENGE, str(tmp_path / "none")], check=False, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "holds no emulator data" in refused.stderr
    assert not (tmp_path / "none").exists()


def test_a_second_emulator_on_a_held_directory_exits_1(tmp_path: Path) -> None:
    with serving([*EMULATOR, "--data-dir", str(tmp_path)]):
        second = subprocess.run(
            [*EMULATOR, "--port", "0", "--data-dir", str(tmp_path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 1
    assert "in use by another emulator" in second.stderr


COMMANDS = pytest.mark.parametrize(
    "command", [EMULATOR, USERSVC_EMULATOR], ids=["esdb_emulator", "usersvc"]
)


@COMMANDS
def test_a_damaged_log_stops_the_command_with_one_line_naming_the_file_and_offset(
    tmp_path: Path, command: list[str]
) -> None:
    fill(tmp_path, 200)
    damaged = damage_frame(tmp_path, 100)
    refused = subprocess.run(
        [*command, "--port", "0", "--data-dir", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert "ERROR" in line
    assert f"{tmp_path / 'events.log'} is damaged at byte offset {damaged.offset}" in line
    assert "salvage" in line


@COMMANDS
def test_salvage_copies_every_whole_frame_into_a_new_directory_and_new_positions_go_above_all(
    tmp_path: Path, command: list[str]
) -> None:
    source, target = tmp_path / "damaged", tmp_path / "salvaged"
    positions = fill(source, 200)
    with serving([*EMULATOR, "--data-dir", str(source)]) as client:
        before = [(e.commit_position, e.stream_name, e.id) for e in client.read_all()]
    damaged = damage_frame(source, 100)
    torn = tear_last_frame(source)
    files = data_files(source)
    done = subprocess.run(
        [*command, "salvage", "--from", str(source), "--to", str(target)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert data_files(source) == files
    assert done.stdout.startswith(
        # The new store's first event, and 200 appends, less two.
        f"salvaged {source} into {target}: kept 199 frames (199 events), skipped 2 damaged "
        "byte ranges, left out 0 events; new events go above commit position "
    )
    assert f"skipped bytes {damaged.offset} to {damaged.end} (" in done.stdout
    lost = {r.position for r in damaged.records + torn.records}
    with serving([*EMULATOR, "--data-dir", str(target)]) as client:
        after = [(e.commit_position, e.stream_name, e.id) for e in client.read_all()]
        position = client.append_to_stream(
            "s-199", current_version=StreamState.NO_STREAM, events=events(1)
        )
    assert after == [e for e in before if e[0] not in lost]
    assert position > positions[-1]


def test_salvage_refuses_a_target_that_is_not_empty_and_writes_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "damaged", tmp_path / "salvaged"
    fill(source, 3)
    target.mkdir()
    (target / "keep").write_bytes(b"mine")
    refused = subprocess.run(
        [*EMULATOR, "salvage", "--from", str(source), "--to", str(target)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "is not empty" in refused.stderr
    assert data_files(target) == {"keep": b"mine"}


def test_a_hostile_bundle_is_one_line_and_exit_1_not_a_traceback(tmp_path: Path) -> None:
    """A bundle whose event says it was recorded in the year 146 billion (its time field is
    the largest a bundle can hold): refused like any damaged bundle."""
    good = tmp_path / "good.bundle"
    write_bundle(good, [stored(5_000, "user-bob", 0)], {"source": "test"})
    records = [payload for kind, payload in frames(raw_content(good)) if kind == EVENT]
    records[0] = records[0][:16] + struct.pack("<q", (1 << 63) - 1) + records[0][24:]
    hostile = tmp_path / "hostile.bundle"
    rewrite(hostile, assemble(b"{}", records))
    argv = [*USERSVC_EMULATOR, "--port", "0", "--mem", "--import", str(hostile)]
    failed = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        line for line in failed.stderr.splitlines() if "import of" in line
    ]
    assert "event 1: its recorded time is out of range" in failed.stderr

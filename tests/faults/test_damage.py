"""The emulator's log damaged in the middle while the system runs: the emulator refuses to start
(naming the offset) instead of cutting history, salvage copies every whole frame into a new
directory, the system runs on it, and the only events missing are those of the damaged frame,
which salvage reported."""

from __future__ import annotations

import subprocess
import sys

from tests.faults.conftest import reported
from tests.faults.load import Writers, audit
from tests.faults.stack import Stack
from tests.fixtures.damaged_logs import damage_frame, frames
from usersvc.events import username_from_stream


def emulator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esdb_emulator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_damaged_log_is_refused_then_salvaged_and_only_the_damaged_frame_is_missing(
    stack: Stack, report: list[str]
) -> None:
    damaged_dir = stack.emulator.data_dir
    with Writers(stack.base_url, "dl") as writers:
        writers.wait_for_writes(60)
    before = writers.tally
    stack.emulator.stop()
    middle = len(frames(damaged_dir)) // 2
    frame = damage_frame(damaged_dir, middle)
    lost = {username_from_stream(record.stream) for record in frame.records}

    refused = emulator("--data-dir", str(damaged_dir), "--port", str(stack.emulator.port))
    assert refused.returncode == 1
    assert f"damaged at byte offset {frame.offset}" in refused.stderr

    salvaged_dir = damaged_dir.with_name("esdb-salvaged")
    salvage = emulator("salvage", "--from", str(damaged_dir), "--to", str(salvaged_dir))
    assert salvage.returncode == 0, salvage.stderr
    assert f"skipped bytes {frame.offset} to {frame.end}" in salvage.stdout

    stack.emulator.data_dir = salvaged_dir
    stack.emulator.start()
    with Writers(stack.base_url, "dl2") as after:
        after.wait_for_writes(30)
        tally = after.stop()
    kept = audit(
        tally, stack.emulator.url, stack.postgres.url, stack.schema, stack.worker_name, "dl2"
    )
    old = audit(
        before, stack.emulator.url, stack.postgres.url, stack.schema, stack.worker_name, "dl"
    )
    report.append(
        reported(kept, f"damaged_frame_users={sorted(lost)} old_lost_in_esdb={old.lost_in_esdb}")
    )
    kept.assert_clean()
    assert set(old.lost_in_esdb) == lost & set(before.created)
    assert not old.duplicated_in_esdb and not old.lost_in_pg and not old.rows_without_201

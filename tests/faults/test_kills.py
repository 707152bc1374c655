"""Processes killed with SIGKILL under write load: the worker (20 times), the emulator (5 times)
and PostgreSQL. Each test ends with the audit (tests/faults/load.py)."""

from __future__ import annotations

import random

from tests.faults.conftest import reported
from tests.faults.load import Writers, audit
from tests.faults.stack import Stack

WORKER_KILLS = 20
EMULATOR_KILLS = 5


def finish(stack: Stack, writers: Writers, prefix: str, report: list[str], extra: str) -> None:
    tally = writers.stop()
    result = audit(
        tally, stack.emulator.url, stack.postgres.url, stack.schema, stack.worker_name, prefix
    )
    report.append(reported(result, extra))
    result.assert_clean()


def test_the_worker_killed_at_random_points_under_write_load(
    stack: Stack, report: list[str]
) -> None:
    assert stack.worker is not None
    chance = random.Random(20261201)
    with Writers(stack.base_url, "wk") as writers:
        for _ in range(WORKER_KILLS):
            writers.wait_for_writes(chance.randint(1, 15))
            stack.worker.kill()
            stack.restart_worker()
        finish(stack, writers, "wk", report, f"kills={WORKER_KILLS} (worker)")


def test_the_emulator_killed_mid_burst(stack: Stack, report: list[str]) -> None:
    chance = random.Random(5)
    with Writers(stack.base_url, "ek") as writers:
        for _ in range(EMULATOR_KILLS):
            writers.wait_for_writes(chance.randint(5, 30))
            stack.emulator.stop(kill=True)
            stack.emulator.start()
        writers.wait_for_writes(10)
        finish(stack, writers, "ek", report, f"kills={EMULATOR_KILLS} (emulator)")


def test_postgresql_killed_and_restarted(stack: Stack, report: list[str]) -> None:
    with Writers(stack.base_url, "pk") as writers:
        writers.wait_for_writes(20)
        stack.postgres.kill()
        writers.wait_for_writes(10)  # writes go to EventStoreDB while PostgreSQL is down
        stack.postgres.start()
        writers.wait_for_writes(10)
        finish(stack, writers, "pk", report, "kills=1 (postgresql)")

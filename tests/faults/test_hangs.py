"""Dependencies that hang (SIGSTOP) for longer than the service's timeouts, under write load:
every request still gets an answer within its bound, and the audit holds afterwards."""

from __future__ import annotations

import time

import httpx

from tests.faults.load import Writers
from tests.faults.stack import Stack
from tests.faults.test_kills import finish

# Seconds a dependency stays stopped: longer than every timeout of the service.
PAUSE = 10.0
# Seconds any answer may take while a dependency hangs (well under PAUSE).
ANSWER_BOUND = 7.0


def probe(http: httpx.Client, path: str, until: float) -> list[tuple[int, float]]:
    """GET `path` again and again until `until`: (status, seconds) of each answer."""
    seen = []
    while time.monotonic() < until:
        started = time.monotonic()
        status = http.get(path).status_code
        seen.append((status, time.monotonic() - started))
    return seen


def test_a_hung_eventstoredb_leaves_reads_fast_and_writes_answered(
    stack: Stack, report: list[str]
) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        known = "hung-esdb-known"
        assert http.post("/users", json={"username": known, "fullName": "Known"}).status_code in (
            201,
            409,
        )
        with Writers(stack.base_url, "he", threads=8) as writers:
            writers.wait_for_writes(10)
            with stack.emulator.frozen():
                reads = probe(http, f"/users/{known}", time.monotonic() + PAUSE)
            writers.wait_for_writes(10)
            slowest_read = max(seconds for _, seconds in reads)
            finish(
                stack,
                writers,
                "he",
                report,
                f"pause={PAUSE}s reads={len(reads)} slowest_read={slowest_read:.2f}s"
                f" slowest_write={writers.tally.slowest:.2f}s",
            )
    assert {status for status, _ in reads} <= {200, 404}
    assert slowest_read < 1.0, "a GET waited on the hung EventStoreDB"
    assert writers.tally.slowest < ANSWER_BOUND


def test_a_hung_postgresql_gives_503_within_a_bound(stack: Stack, report: list[str]) -> None:
    with (
        httpx.Client(base_url=stack.base_url, timeout=30) as http,
        Writers(stack.base_url, "hp") as writers,
    ):
        writers.wait_for_writes(10)
        with stack.postgres.frozen():
            reads = probe(http, "/users/nobody-here", time.monotonic() + PAUSE / 2)
            health = probe(http, "/readyz", time.monotonic() + PAUSE / 2)
        writers.wait_for_writes(10)
        finish(
            stack,
            writers,
            "hp",
            report,
            f"pause={PAUSE}s slowest_read={max(s for _, s in reads):.2f}s"
            f" slowest_readyz={max(s for _, s in health):.2f}s",
        )
    assert max(seconds for _, seconds in reads + health) < ANSWER_BOUND
    assert 503 in {status for status, _ in reads}
    assert 503 in {status for status, _ in health}

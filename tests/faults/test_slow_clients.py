"""Fifty slow clients (trickling heads and bodies, readers that never read) while writers run:
every probe is answered within its bound, and the audit holds."""

from __future__ import annotations

import time

import httpx

from tests.faults.load import Writers
from tests.faults.stack import Stack
from tests.faults.test_kills import finish
from tests.fixtures.slow_clients import PROBE_BOUND, PROBES, SLOW_CLIENTS, trickling


def test_fifty_slow_clients_starve_no_one(stack: Stack, report: list[str]) -> None:
    with (
        Writers(stack.base_url, "sc") as writers,
        httpx.Client(base_url=stack.base_url, timeout=30) as http,
    ):
        with trickling(stack.http_port):
            writers.wait_for_writes(10)
            probes = []
            for _ in range(PROBES):
                started = time.monotonic()
                status = http.get("/livez").status_code
                probes.append((status, time.monotonic() - started))
            writers.wait_for_writes(10)
        slowest = max(seconds for _, seconds in probes)
        finish(
            stack,
            writers,
            "sc",
            report,
            f"slow_clients={SLOW_CLIENTS} probes={len(probes)} slowest_probe={slowest:.3f}s",
        )
    assert {status for status, _ in probes} == {200}
    assert slowest < PROBE_BOUND

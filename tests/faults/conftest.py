"""The fault suite's system (one per test module, owned here so tests can kill its parts) and
the counts each test reports, printed at the end of the run."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.load import Audit
from tests.faults.stack import Stack
from tests.fixtures.fault_servers import EmulatorProcess, OwnPostgres
from tests.fixtures.processes import free_port

_REPORTS: list[tuple[str, str]] = []


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Not under pytest's temp root, which prunes old runs' folders (see tests.fixtures.backends).
    with tempfile.TemporaryDirectory(prefix="usersvc-faults-") as folder:
        root = Path(folder)
        system = Stack(
            emulator=EmulatorProcess(free_port(), root / "esdb"),
            postgres=OwnPostgres(root / "pg"),
            schema=f"f_{uuid.uuid4().hex[:10]}",
            worker_name="faults",
            config=root / "absent.toml",
        )
        try:
            system.start()
            yield system
        finally:
            codes = system.stop()
    assert all(code == 0 for code in codes), f"service and worker must stop cleanly, got {codes}"


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test adds here are printed in the run's summary under its name."""
    lines: list[str] = []
    yield lines
    _REPORTS.extend((request.node.name, line) for line in lines)


def reported(audit: Audit, extra: str = "") -> str:
    return f"{audit.counts()}{' ' + extra if extra else ''}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORTS:
        terminalreporter.section("fault suite counts")
        for name, line in _REPORTS:
            terminalreporter.write_line(f"{name}: {line}")

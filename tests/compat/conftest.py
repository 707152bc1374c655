"""Fixtures of the compatibility suite: one esdbclient per test against `esdb_url`.

The same tests run against a real EventStoreDB when TEST_ESDB_URL is set (or Docker answers);
tests that need the emulator itself (restart, import) take `emulator` and skip there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, NewEvent

from esdb_emulator import EmbeddedServer
from tests.fixtures.backends import EsdbTarget


@pytest.fixture
def client(esdb_url: str) -> Iterator[EventStoreDBClient]:
    client = EventStoreDBClient(esdb_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def stream(unique: str) -> str:
    return f"compat-{unique}"


@pytest.fixture
def emulator(esdb_server: EsdbTarget, tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A private on-disk emulator of this test (skips against a real server)."""
    if esdb_server.real:
        pytest.skip(
            "needs the emulator itself (its store or data directory); a real server is in use"
        )
    with EmbeddedServer(tmp_path / "esdb") as server:
        yield server


def event(type_: str = "Tested", n: int = 0, **extra: object) -> NewEvent:
    return NewEvent(
        type=type_,
        data=json.dumps({"n": n, **extra}).encode(),
        metadata=b'{"m":1}',
        id=uuid.uuid4(),
    )


def events(count: int, type_: str = "Tested") -> list[NewEvent]:
    return [event(type_, n) for n in range(count)]

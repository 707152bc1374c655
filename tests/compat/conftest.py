"""Fixtures of the compatibility suite: one esdbclient per test against `esdb_url`, so each test
runs against every EventStoreDB backend present (see `tests.fixtures.esdb_backends`). Tests of
the emulator itself take `own_emulator` and carry the `emulator` marker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from esdbclient import EventStoreDBClient


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

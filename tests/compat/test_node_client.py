"""The official Node client (`@eventstore/db-client`) asks ServerFeatures first and takes the path
it offers a real server: its appends go through BatchAppend, never the unary Append. Told
UNIMPLEMENTED, as by a server without ServerFeatures, it falls back to Append, which shows that
the emulator's answer is what chooses the path.

Needs Node and the client installed: `npm ci --prefix tests/compat/node` (CI installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from esdb_emulator import EmbeddedServer
from tests.fixtures.rpc_calls import GET_SUPPORTED_METHODS, CallCounter

pytestmark = pytest.mark.emulator

NODE_DIR = Path(__file__).parent / "node"
APPEND = "/event_store.client.streams.Streams/Append"
BATCH_APPEND = "/event_store.client.streams.Streams/BatchAppend"


@pytest.fixture(scope="module")
def node_check() -> list[str]:
    if not (NODE_DIR / "node_modules" / "@eventstore" / "db-client").is_dir():
        pytest.skip("the Node client is not installed: run `npm ci --prefix tests/compat/node`")
    node = shutil.which("node")
    assert node is not None, "the Node client is installed but there is no `node` to run it"
    return [node, str(NODE_DIR / "client_check.js")]


def run_node_client(
    command: list[str], unimplemented: Collection[str] = ()
) -> tuple[CallCounter, dict[str, Any]]:
    """Run the Node client's check against a fresh in-memory emulator; the calls it served and
    what the client saw."""
    counter = CallCounter(unimplemented)
    with EmbeddedServer(interceptors=[counter]) as server:
        done = subprocess.run(
            [*command, server.connection_string, "node-client"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    return counter, json.loads(done.stdout)


@pytest.fixture(scope="module")
def with_features(node_check: list[str]) -> tuple[CallCounter, dict[str, Any]]:
    return run_node_client(node_check)


def test_the_node_client_asks_server_features_once(
    with_features: tuple[CallCounter, dict[str, Any]],
) -> None:
    counter, _ = with_features
    assert counter.calls(GET_SUPPORTED_METHODS) == 1


def test_the_node_client_appends_through_batch_append(
    with_features: tuple[CallCounter, dict[str, Any]],
) -> None:
    counter, _ = with_features
    assert counter.calls(BATCH_APPEND) == 1  # one stream carries every append


def test_the_node_client_never_uses_the_unary_append(
    with_features: tuple[CallCounter, dict[str, Any]],
) -> None:
    counter, _ = with_features
    assert counter.calls(APPEND) == 0


def test_the_node_client_reads_back_what_it_appended(
    with_features: tuple[CallCounter, dict[str, Any]],
) -> None:
    _, seen = with_features
    assert [(e["revision"], e["data"]) for e in seen["read"]] == [
        (0, {"n": 0}),
        (1, {"n": 1}),
        (2, {"n": 2}),
    ]


def test_the_node_client_gets_wrong_expected_version_with_the_actual_revision(
    with_features: tuple[CallCounter, dict[str, Any]],
) -> None:
    _, seen = with_features
    assert seen["stale"] == {"type": "wrong-expected-version", "actualVersion": "2"}


def test_the_node_client_gets_the_position_of_the_last_appended_event(
    with_features: tuple[CallCounter, dict[str, Any]],
) -> None:
    _, seen = with_features
    assert [a["commit"] for a in seen["appended"]] == [
        seen["read"][0]["commit"],
        seen["read"][2]["commit"],
    ]


def test_without_server_features_the_node_client_falls_back_to_unary_appends(
    node_check: list[str],
) -> None:
    counter, _ = run_node_client(node_check, unimplemented=[GET_SUPPORTED_METHODS])
    assert (counter.calls(APPEND), counter.calls(BATCH_APPEND)) == (3, 0)

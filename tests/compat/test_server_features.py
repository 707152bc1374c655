"""ServerFeatures.GetSupportedMethods: the methods a server implements, named and featured as a
24.10 server names them, so clients that ask (the Node client) take their real-server paths."""

from __future__ import annotations

import pytest

from esdb_emulator import EmbeddedServer
from tests.fixtures.rpc_calls import supported_methods

STREAMS = "event_store.client.streams.streams"


def test_a_server_says_it_is_24_10(esdb_url: str) -> None:
    version, _ = supported_methods(esdb_url)
    assert version.startswith("24.10.")


def test_a_server_lists_the_streams_methods_with_their_features(esdb_url: str) -> None:
    _, listed = supported_methods(esdb_url)
    streams = {name: listed[name] for name in listed if name.split("/")[0] == STREAMS}
    assert streams == {
        f"{STREAMS}/read": ["position", "events"],
        f"{STREAMS}/append": [],
        f"{STREAMS}/delete": [],
        f"{STREAMS}/tombstone": [],
        f"{STREAMS}/batchappend": ["deadline_duration"],
    }


@pytest.mark.emulator
def test_the_emulator_lists_exactly_the_methods_it_implements(
    shared_emulator: EmbeddedServer,
) -> None:
    _, listed = supported_methods(shared_emulator.connection_string)
    assert listed == {
        f"{STREAMS}/read": ["position", "events"],
        f"{STREAMS}/append": [],
        f"{STREAMS}/delete": [],
        f"{STREAMS}/tombstone": [],
        f"{STREAMS}/batchappend": ["deadline_duration"],
        "event_store.client.gossip.gossip/read": [],
        "event_store.client.persistent_subscriptions.persistentsubscriptions/list": [
            "stream",
            "all",
        ],
        "event_store.client.operations.operations/startscavenge": [],
        "event_store.client.operations.operations/stopscavenge": [],
        "event_store.client.server_features.serverfeatures/getsupportedmethods": [],
    }

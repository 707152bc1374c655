"""Gossip discovery and the persistent-subscriptions call clients make on their own."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from esdbclient import EventStoreDBClient

from esdb_emulator import EmbeddedServer


def test_gossip_reports_one_leader_at_the_connected_address(
    client: EventStoreDBClient, esdb_url: str
) -> None:
    members = client.read_gossip()
    assert [m.state for m in members] == ["NODE_STATE_LEADER"]
    target = urlsplit(esdb_url)
    assert members[0].address == target.hostname
    assert members[0].port == target.port


def test_discover_scheme_connects_through_gossip(esdb_url: str) -> None:
    discover = esdb_url.replace("esdb://", "esdb+discover://", 1)
    client = EventStoreDBClient(discover)
    try:
        assert client.get_commit_position() > 0
    finally:
        client.close()


def test_listing_persistent_subscriptions_on_a_fresh_server_is_empty(
    client: EventStoreDBClient,
) -> None:
    assert client.list_subscriptions() == []


@pytest.mark.emulator
def test_gossip_advertises_the_configured_host() -> None:
    with EmbeddedServer(advertised_host="localhost") as server:
        client = EventStoreDBClient(server.connection_string)
        try:
            (member,) = client.read_gossip()
            assert (member.address, member.port) == ("localhost", server.port)
        finally:
            client.close()

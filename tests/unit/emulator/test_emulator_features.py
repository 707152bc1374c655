"""ServerFeatures' listing rules, as the real server applies them to the methods it hosts."""

from __future__ import annotations

from esdb_emulator.rpc.features import features_of, supported_methods


def test_reads_of_streams_have_the_position_and_events_features() -> None:
    assert features_of("event_store.client.streams.Streams", "Read") == ["position", "events"]


def test_batch_append_has_the_deadline_duration_feature() -> None:
    assert features_of("event_store.client.streams.Streams", "BatchAppend") == ["deadline_duration"]


def test_persistent_subscription_methods_work_on_streams_and_all() -> None:
    service = "event_store.client.persistent_subscriptions.PersistentSubscriptions"
    assert features_of(service, "List") == ["stream", "all"]


def test_other_methods_have_no_features() -> None:
    assert features_of("event_store.client.streams.Streams", "Append") == []


def test_the_listing_lower_cases_names_and_leaves_out_services_not_for_clients() -> None:
    hosted = [
        ("event_store.client.gossip.Gossip", "Read"),
        ("event_store.cluster.Elections", "Ping"),
    ]
    reply = supported_methods(hosted, "24.10.0")
    assert [(m.service_name, m.method_name) for m in reply.methods] == [
        ("event_store.client.gossip.gossip", "read")
    ]

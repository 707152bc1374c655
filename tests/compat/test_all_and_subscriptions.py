"""Reading `$all` with filters, and catch-up subscriptions to `$all` and to one stream."""

from __future__ import annotations

from esdbclient import Checkpoint, EventStoreDBClient, StreamState
from esdbclient.events import CaughtUp, RecordedEvent

from tests.fixtures.esdb_events import event, events


def test_all_starts_with_a_system_event_hidden_by_the_default_filter(
    client: EventStoreDBClient,
) -> None:
    (first,) = client.read_all(filter_exclude=[], limit=1)
    assert first.type.startswith("$")
    assert first.commit_position > 0
    assert not any(e.type.startswith("$") for e in client.read_all(limit=50))


def test_read_all_filters_by_stream_prefix_and_type_both_ways(
    client: EventStoreDBClient, unique: str
) -> None:
    a, b = f"alpha-{unique}", f"beta-{unique}"
    client.append_to_stream(a, current_version=StreamState.NO_STREAM, events=events(3, "A"))
    client.append_to_stream(b, current_version=StreamState.NO_STREAM, events=events(2, "B"))
    by_stream = list(
        client.read_all(filter_include=[f"alpha-{unique}"], filter_by_stream_name=True)
    )
    assert [(e.stream_name, e.stream_position) for e in by_stream] == [(a, 0), (a, 1), (a, 2)]
    backwards = list(
        client.read_all(
            backwards=True, filter_include=[f"beta-{unique}"], filter_by_stream_name=True, limit=5
        )
    )
    assert [(e.stream_name, e.stream_position) for e in backwards] == [(b, 1), (b, 0)]
    from_position = by_stream[1].commit_position
    rest = list(
        client.read_all(
            commit_position=from_position, filter_include=[a], filter_by_stream_name=True
        )
    )
    assert [e.stream_position for e in rest] == [1, 2]
    typed = [e for e in client.read_all(filter_include=["B"]) if e.stream_name == b]
    assert len(typed) == 2
    excluded = client.read_all(filter_exclude=[r"\$.+", "A", "B"], limit=10_000)
    assert not {e.stream_name for e in excluded} & {a, b}


def test_get_commit_position_is_the_last_appended_position(
    client: EventStoreDBClient, stream: str
) -> None:
    position = client.append_to_stream(stream, current_version=StreamState.ANY, events=events(2))
    assert client.get_commit_position() >= position


def test_subscription_to_all_catches_up_then_goes_live_with_checkpoints(
    client: EventStoreDBClient, unique: str
) -> None:
    stream = f"sub-{unique}"
    start = client.append_to_stream(
        f"before-{unique}", current_version=StreamState.NO_STREAM, events=event()
    )
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3))
    subscription = client.subscribe_to_all(
        commit_position=start,
        filter_include=[stream],
        filter_by_stream_name=True,
        include_checkpoints=True,
        include_caught_up=True,
        window_size=1,
        checkpoint_interval_multiplier=1,
        timeout=10,
    )
    seen: list[RecordedEvent] = []
    checkpoints: list[int] = []
    caught_up = False
    with subscription:
        for item in subscription:
            if isinstance(item, CaughtUp):
                caught_up = True
                client.append_to_stream(stream, current_version=2, events=events(2))
            elif isinstance(item, Checkpoint):
                checkpoints.append(item.commit_position)
            else:
                seen.append(item)
                if len(seen) == 5:
                    break
    assert caught_up
    assert [e.stream_position for e in seen] == [0, 1, 2, 3, 4]
    assert checkpoints and checkpoints[0] > start
    assert checkpoints == sorted(checkpoints)


def test_subscription_to_all_from_a_position_is_exclusive(
    client: EventStoreDBClient, stream: str
) -> None:
    first = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())
    client.append_to_stream(stream, current_version=0, events=event())
    with client.subscribe_to_all(
        commit_position=first, filter_include=[stream], filter_by_stream_name=True, timeout=10
    ) as subscription:
        recorded = next(iter(subscription))
    assert recorded.stream_position == 1


def test_subscription_to_a_stream_from_start_and_from_a_revision(
    client: EventStoreDBClient, stream: str
) -> None:
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events(3))
    with client.subscribe_to_stream(stream, include_caught_up=True, timeout=10) as subscription:
        items = []
        for item in subscription:
            items.append(item)
            if isinstance(item, CaughtUp):
                client.append_to_stream(stream, current_version=2, events=event())
            elif item.stream_position == 3:
                break
    kinds = ["caught_up" if isinstance(i, CaughtUp) else i.stream_position for i in items]
    assert kinds == [0, 1, 2, "caught_up", 3]
    with client.subscribe_to_stream(stream, stream_position=1, timeout=10) as subscription:
        assert next(iter(subscription)).stream_position == 2


def test_asyncio_client_appends_reads_and_subscribes(esdb_url: str, stream: str) -> None:
    import asyncio

    from esdbclient import AsyncEventStoreDBClient

    async def scenario() -> list[int]:
        client = AsyncEventStoreDBClient(esdb_url)
        await client.connect()
        try:
            await client.append_to_stream(
                stream, current_version=StreamState.NO_STREAM, events=events(2)
            )
            read = [e.stream_position for e in await client.get_stream(stream)]
            subscription = await client.subscribe_to_all(
                filter_include=[stream], filter_by_stream_name=True, timeout=10
            )
            async with subscription:
                async for recorded in subscription:
                    read.append(recorded.stream_position)
                    if recorded.stream_position == 1:
                        break
            return read
        finally:
            await client.close()

    assert asyncio.run(scenario()) == [0, 1, 0, 1]

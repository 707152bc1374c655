"""Many writers and subscribers at once: no lost, duplicated or reordered event."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from esdbclient import EventStoreDBClient, StreamState
from esdbclient.events import CaughtUp
from esdbclient.exceptions import WrongCurrentVersion

from tests.fixtures.esdb_events import event

WRITERS = 6
SUBSCRIBERS = 3
PER_WRITER = 60


def test_writers_and_subscribers_at_once_lose_duplicate_and_reorder_nothing(
    esdb_url: str, unique: str
) -> None:
    prefix = f"conc-{unique}-"
    client = EventStoreDBClient(esdb_url)
    start = client.get_commit_position()
    ready = threading.Barrier(SUBSCRIBERS + 1)

    def subscribe() -> list[tuple[str, int, int]]:
        seen: list[tuple[str, int, int]] = []
        with client.subscribe_to_all(
            commit_position=start,
            filter_include=[prefix + ".*"],
            filter_by_stream_name=True,
            include_caught_up=True,
            timeout=60,
        ) as subscription:
            for item in subscription:
                if isinstance(item, CaughtUp):
                    if not seen:
                        ready.wait()
                    continue
                seen.append((item.stream_name, item.stream_position, item.commit_position))
                if len(seen) == WRITERS * PER_WRITER:
                    return seen
        return seen

    def write(writer: int) -> list[int]:
        writer_client = EventStoreDBClient(esdb_url)
        try:
            stream = f"{prefix}{writer}"
            positions = []
            for n in range(PER_WRITER):
                version = StreamState.NO_STREAM if n == 0 else n - 1
                payload = [event(n=n)] if n % 2 else event(n=n)
                positions.append(
                    writer_client.append_to_stream(stream, current_version=version, events=payload)
                )
            return positions
        finally:
            writer_client.close()

    try:
        with ThreadPoolExecutor(WRITERS + SUBSCRIBERS) as pool:
            subscribers = [pool.submit(subscribe) for _ in range(SUBSCRIBERS)]
            ready.wait(timeout=30)
            writers = [pool.submit(write, n) for n in range(WRITERS)]
            appended = sorted(p for w in writers for p in w.result(timeout=90))
            received = [s.result(timeout=90) for s in subscribers]
    finally:
        client.close()
    for seen in received:
        positions = [p for _, _, p in seen]
        assert positions == appended
        for writer in range(WRITERS):
            revisions = [r for s, r, _ in seen if s == f"{prefix}{writer}"]
            assert revisions == list(range(PER_WRITER))


def test_racing_appends_with_the_same_expected_version_let_exactly_one_win(
    esdb_url: str, stream: str
) -> None:
    client = EventStoreDBClient(esdb_url)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=event())

    def attempt(_: int) -> bool:
        try:
            client.append_to_stream(stream, current_version=0, events=event())
        except WrongCurrentVersion:
            return False
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(attempt, range(8)))
        assert outcomes.count(True) == 1
        assert client.get_current_version(stream) == 1
    finally:
        client.close()

"""A poison event among good ones, under write load: it is parked, everything else is
projected, the worker keeps running, and the audit holds."""

from __future__ import annotations

import psycopg
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from tests.faults.load import Writers
from tests.faults.stack import Stack
from tests.faults.test_kills import finish
from usersvc.events import USER_CREATED
from worker.parked import ParkedStreams
from worker.projection import Projection


def test_a_poison_event_is_parked_and_the_rest_flows(stack: Stack, report: list[str]) -> None:
    client = EventStoreDBClient(stack.emulator.url)
    try:
        with Writers(stack.base_url, "po") as writers:
            writers.wait_for_writes(20)
            client.append_to_stream(
                "user-po-poison",
                current_version=StreamState.ANY,
                events=[NewEvent(type=USER_CREATED, data=b'{"username": "po-poison"}')],
            )
            writers.wait_for_writes(20)
            finish(stack, writers, "po", report, "poison=1")
    finally:
        client.close()
    assert stack.worker is not None and stack.worker.running()
    with psycopg.connect(stack.postgres.url, autocommit=True) as conn:
        parked = ParkedStreams(conn, Projection(stack.schema, stack.worker_name)).streams()
    assert [s.stream for s in parked] == ["user-po-poison"]

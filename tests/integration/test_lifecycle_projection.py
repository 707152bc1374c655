"""A user's whole life, written through real gRPC (esdbclient) into an emulator of the test's own,
projected into real PostgreSQL by the real worker (live, and after a restart mid-way) and by
replay to a moment between each pair of events: each time, every user's row equals the state
`usersvc.lifecycle.fold` gives from the stream as it reads at that moment.

Two lives of the same shape: create, change, delete, create again, change. `zed` is deleted as
the service deletes (its stream truncated before the deletion, so nothing before it can be
read any more, by anyone); `hal`'s deletion is half done (no truncation yet), so a replay to a
moment before it still shows the first life. `ann`, created first, is the anchor every cutoff
lies after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from esdbclient import EventStoreDBClient
from psycopg import sql

from esdb_emulator import EmbeddedServer
from repro.cutoff import UntilPosition
from repro.history import EsdbSource
from repro.replay import ReplayRequest, replay
from tests.fixtures.lifecycle import Life, as_row, folded
from tests.fixtures.waiting import wait_for_checkpoint
from tests.fixtures.worker import WORKER, settings_for, worker_thread

Rows = dict[str, tuple[Any, ...] | None]


@dataclass
class World:
    server: EmbeddedServer
    client: EventStoreDBClient
    lives: list[Life]

    def expected(self, until_position: int | None = None) -> Rows:
        return {
            life.username: as_row(folded(self.client, life.stream, until_position))
            for life in self.lives
        }


@pytest.fixture
def world() -> Iterator[World]:
    with EmbeddedServer() as server:
        client = EventStoreDBClient(server.connection_string)
        names = ("ann", "zed", "hal")
        yield World(server, client, [Life(client, name) for name in names])
        client.close()


def steps(world: World) -> list[Callable[[], int]]:
    """Each step appends one event (or a deletion: the event and then the truncation) and
    returns its commit position; the two lives interleave."""
    ann, zed, hal = world.lives
    return [
        lambda: ann.create("Ann Anchor"),
        lambda: zed.create("Zed First"),
        lambda: hal.create("Hal First"),
        lambda: zed.change("Zed Second"),
        lambda: hal.change("Hal Second"),
        zed.delete,
        lambda: hal.delete(truncate=False),
        lambda: hal.create("Hal Third"),
        lambda: zed.create("Zed Third"),
        lambda: zed.change("Zed Fourth"),
        lambda: hal.change("Hal Fourth"),
    ]


def projected(pg_url: str, schema: str, world: World) -> Rows:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            sql.SQL('SELECT username, "fullName", "createdAt", revision FROM {}').format(
                sql.Identifier(schema, "user")
            )
        ).fetchall()
    by_name = {row[0]: tuple(row) for row in found}
    return {life.username: by_name.get(life.username) for life in world.lives}


def test_the_live_worker_follows_each_event_to_the_folded_state(
    world: World, pg_url: str, schema: str
) -> None:
    seen: list[Rows] = []
    wanted: list[Rows] = []
    with worker_thread(settings_for(world.server.connection_string, pg_url, schema)):
        for step in steps(world):
            wait_for_checkpoint(pg_url, schema, WORKER, step())
            seen.append(projected(pg_url, schema, world))
            wanted.append(world.expected())
    assert seen == wanted


def test_a_worker_restarted_mid_way_catches_up_to_the_folded_state(
    world: World, pg_url: str, schema: str
) -> None:
    settings = settings_for(world.server.connection_string, pg_url, schema, worker_batch_size=3)
    everything = steps(world)
    with worker_thread(settings):
        for step in everything[:4]:
            position = step()
        wait_for_checkpoint(pg_url, schema, WORKER, position)
    at_stop = projected(pg_url, schema, world), world.expected()
    for step in everything[4:]:
        position = step()
    with worker_thread(settings):
        wait_for_checkpoint(pg_url, schema, WORKER, position)
    assert at_stop[0] == at_stop[1]
    assert projected(pg_url, schema, world) == world.expected()


def test_a_replay_to_each_moment_between_two_events_equals_the_folded_state(
    world: World, pg_url: str, unique: str
) -> None:
    positions = [step() for step in steps(world)]
    got: list[Rows] = []
    wanted: list[Rows] = []
    for index, position in enumerate(positions):
        schema = f"m{index}_{unique}"
        replay(
            EsdbSource(world.server.connection_string),
            ReplayRequest(
                target_url=pg_url,
                schema=schema,
                checkpoint_name=WORKER,
                cutoff=UntilPosition(position),
            ),
        )
        got.append(projected(pg_url, schema, world))
        wanted.append(world.expected(until_position=position))
    assert got == wanted


def test_the_truncated_life_is_gone_from_every_moment_of_a_replay(
    world: World, pg_url: str, unique: str
) -> None:
    # The same claim seen from the other side: zed's first life was forgotten, so no moment of
    # any replay shows it, while hal's (whose deletion was half done) still shows at its moment.
    positions = [step() for step in steps(world)]
    schema = f"first_{unique}"
    replay(
        EsdbSource(world.server.connection_string),
        ReplayRequest(
            target_url=pg_url,
            schema=schema,
            checkpoint_name=WORKER,
            cutoff=UntilPosition(positions[4]),
        ),
    )
    rows = projected(pg_url, schema, world)
    assert rows["zed"] is None
    assert rows["hal"] is not None
    assert rows["hal"][1] == "Hal Second"

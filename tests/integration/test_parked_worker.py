"""The live worker on a history the original Node service could write, against a private
emulator (real gRPC) and PostgreSQL: bad events are parked, everything else is projected, the
worker keeps running, and `usersvc parked` (the real command line) shows, skips and retries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from esdbclient import EventStoreDBClient, NewEvent, StreamState

from tests.fixtures.cli import run_usersvc
from tests.fixtures.history import append_users, projected
from tests.fixtures.waiting import logged, wait_for_checkpoint
from tests.fixtures.worker import WORKER, settings_for, worker_thread
from usersvc.events import USER_CREATED, stream_name

OPENED = {"openedAt": "2019-03-01T10:00:00.000Z"}


def raw(client: EventStoreDBClient, stream: str, *bodies: dict[str, object]) -> int:
    """`user-created` events with these bodies (and the original's `openedAt`), unchecked."""
    return client.append_to_stream(
        stream,
        current_version=StreamState.ANY,
        events=[
            NewEvent(type=USER_CREATED, data=json.dumps({**body, **OPENED}).encode())
            for body in bodies
        ],
    )


def test_bad_events_of_an_old_history_are_parked_and_operable_while_the_worker_runs(
    pg_url: str, schema: str, unique: str, tmp_path: Path
) -> None:
    from esdb_emulator import EmbeddedServer

    long_name = f"long-{unique}"
    twice = f"twice-{unique}"
    with EmbeddedServer(data_dir=tmp_path / "esdb") as server:
        url = server.connection_string
        settings = settings_for(url, pg_url, schema, worker_park_after_attempts=2)
        client = EventStoreDBClient(url)
        try:
            append_users(client, [f"ok-{unique}-a"])
            # What the original service wrote for a POST without a username.
            raw(client, "user-undefined", {"fullName": "No Name"})
            raw(client, stream_name(long_name), {"username": long_name, "fullName": "x" * 101})
            # Two user-created in one stream: the first one wins (usersvc.lifecycle).
            raw(
                client,
                stream_name(twice),
                {"username": twice, "fullName": "First"},
                {"username": twice, "fullName": "Second"},
            )
            with (
                logged("worker.parking", f"parked stream {stream_name(long_name)}") as parked,
                worker_thread(settings),
            ):
                last = append_users(client, [f"ok-{unique}-b"])[-1]
                wait_for_checkpoint(pg_url, schema, WORKER, last, timeout=60)
                assert parked.is_set()
                # A good event of the parked stream waits behind the bad one.
                behind = raw(
                    client, stream_name(long_name), {"username": long_name, "fullName": "Fixed"}
                )
                head = append_users(client, [f"ok-{unique}-c"])[-1]
                wait_for_checkpoint(pg_url, schema, WORKER, head, timeout=60)
                cli = Operator(pg_url, schema, tmp_path)
                listed = cli.lines("list")
                shown = cli.lines("show", stream_name(long_name))
                skipped = cli.run(
                    "skip", stream_name(long_name), "--reason", "too long", "--by", "ops"
                )
                retried = cli.run("retry", "user-undefined")
                after = cli.lines("list")
                ready = readiness(url, pg_url, schema)
        finally:
            client.close()
    names = [name for name, _ in projected(pg_url, schema, "")]
    assert f"ok-{unique}-a" in names and f"ok-{unique}-c" in names
    assert twice in names
    assert sorted(line["stream"] for line in listed) == sorted(
        ["user-undefined", stream_name(long_name)]
    )
    assert [e["commitPosition"] for e in shown[1:]][-1] == behind
    assert skipped.returncode == 0, skipped.stderr
    assert retried.returncode == 1  # the same code refuses it again: still parked
    assert json.loads(retried.stdout)["parked"] is True
    assert [line["stream"] for line in after] == ["user-undefined"]
    assert dict(projected(pg_url, schema, long_name)) == {long_name: behind}
    # Ready (every other stream is projected) but degraded, with the count.
    assert ready["status"] == "degraded"
    assert ready["checks"]["parked"] == {"status": "degraded", "streams": 1}


def readiness(esdb_url: str, pg_url: str, schema: str) -> dict[str, Any]:
    from service.app import close_app, create_app

    app = create_app(settings_for(esdb_url, pg_url, schema))
    try:
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 200, answer.json
        body: dict[str, Any] = answer.json  # type: ignore[assignment]
        return body
    finally:
        close_app(app)


class Operator:
    """`usersvc parked ...` run as an operator would, on the test's read model."""

    def __init__(self, pg_url: str, schema: str, tmp_path: Path) -> None:
        self.env = {"DATABASE_URL": pg_url, "DATABASE_SCHEMA": schema, "WORKER_NAME": WORKER}
        self.config = tmp_path / "absent.toml"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_usersvc("parked", *args, env=self.env, config=self.config)

    def lines(self, *args: str) -> list[dict[str, object]]:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

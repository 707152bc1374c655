"""A user's life over real HTTP: PATCH, history, time travel; and the cost of folding a stream.

    python -m benchmarks.lifecycle_bench [--patches 2000] [--reads 2000] [--clients 8]

Starts, as separate processes, the emulator (in memory) and the service under gunicorn, with an
embedded PostgreSQL (or `DATABASE_URL`) and a local signing key; every request carries a bearer
token, verified as in production. Then measures
- PATCH /users/<name> from `--clients` concurrent keep-alive clients, each changing its own user
  with the ETag of its previous answer: requests/s, p50, p99;
- for reference, POST /users from the same clients (one append, no read);
- the baseline, in the same run, through the same clients, gunicorn, Flask and token check: PATCH
  without If-Match, answered 428 before the stream is read, so the ratio shows what reading,
  folding and appending add;
- GET /users/<name>/events?limit=100 and time travel (?atRevision, ?asOf) of a 100-event stream,
  one client, one request at a time: p50, p99;
- folding a 1,000-event stream in-process (decode every event through the one decoder, then the
  one fold: `service.aggregate.load`), and reading it over gRPC: median and p99; and time travel
  of that stream over HTTP.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from esdbclient import EventStoreDBClient, NewEvent, RecordedEvent

from benchmarks.support import free_port, percentile, postgres, wait_http
from service.aggregate import load
from usersvc.events import (
    FullNameChanged,
    encode_event,
    encode_metadata,
    stream_name,
)
from usersvc.tokens import ADMIN_SCOPE, ensure_private_key, mint
from worker.migrator import migrate


def _line(label: str, rate: float | None, latencies: list[float]) -> str:
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    rps = f"{rate:,.0f} req/s, " if rate is not None else ""
    return f"{label}: {rps}p50 {p50:.2f} ms, p99 {p99:.2f} ms\n"


def _timed(total: int, call: Callable[[int], None]) -> list[float]:
    latencies = []
    for i in range(total):
        started = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - started)
    return latencies


def _concurrently(
    clients: int, total: int, request: Callable[[httpx.Client, int, int], None], base: str
) -> tuple[float, list[float]]:
    def work(worker: int) -> list[float]:
        with httpx.Client(base_url=base, timeout=10) as http:
            return _timed(len(range(worker, total, clients)), lambda i: request(http, worker, i))

    started = time.perf_counter()
    latencies: list[float] = []
    with ThreadPoolExecutor(clients) as pool:
        for part in pool.map(work, range(clients)):
            latencies.extend(part)
    return total / (time.perf_counter() - started), latencies


def _changes(username: str, count: int) -> list[NewEvent]:
    now = datetime.now(UTC)
    return [
        NewEvent(
            type="user-full-name-changed",
            data=encode_event(FullNameChanged(username, f"Name {n}", now)),
            metadata=encode_metadata(),
        )
        for n in range(count)
    ]


def _long_stream(esdb: EventStoreDBClient, base: str, http: httpx.Client, events: int) -> str:
    """A user whose stream holds `events` events: created over HTTP, changed directly."""
    username = f"long-{events}-{uuid.uuid4().hex[:6]}"
    assert http.post("/users", json={"username": username, "fullName": "Long"}).status_code == 201
    esdb.append_to_stream(
        stream_name(username), current_version=0, events=_changes(username, events - 1)
    )
    return username


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    out = sys.stdout.write
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as database_url:
        schema = f"bench_{uuid.uuid4().hex[:6]}"
        migrate(database_url, schema)
        key_file = Path(tmp) / "signing-key.pem"
        key = ensure_private_key(key_file)
        esdb_port, http_port = free_port(), free_port()
        esdb_url = f"esdb://127.0.0.1:{esdb_port}?tls=false"
        env = {
            **os.environ,
            "ESDB_CONNECTION_STRING": esdb_url,
            "DATABASE_URL": database_url,
            "DATABASE_SCHEMA": schema,
            "HTTP_PORT": str(http_port),
            "LOG_LEVEL": "WARNING",
            "AUTH_SIGNING_KEY_FILE": str(key_file),
            "AUTH_JWKS_URL": "",
        }
        base = f"http://127.0.0.1:{http_port}"
        admin = {
            "Authorization": "Bearer "
            + mint(
                key,
                subject="bench",
                issuer="usersvc",
                audience="usersvc",
                scopes=[ADMIN_SCOPE],
            )
        }
        try:
            for command in (
                ["emulator", "--mem", "--port", str(esdb_port), "--log-level", "WARNING"],
                ["serve"],
            ):
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "usersvc_cli.main", *command], env=env)
                )
            wait_http(f"{base}/health", processes[1])
            esdb = EventStoreDBClient(esdb_url)
            http = httpx.Client(base_url=base, timeout=10, headers=admin)
            prefix = uuid.uuid4().hex[:8]
            etags: dict[int, str] = {}
            for client in range(args.clients):
                created = http.post(
                    "/users", json={"username": f"{prefix}-{client}", "fullName": "Start"}
                )
                etags[client] = created.headers["ETag"]

            def change(http: httpx.Client, client: int, i: int) -> None:
                response = http.patch(
                    f"/users/{prefix}-{client}",
                    json={"fullName": f"Name {i}"},
                    headers={**admin, "If-Match": etags[client]},
                )
                assert response.status_code == 200, response.text
                etags[client] = response.headers["ETag"]

            rate, latencies = _concurrently(args.clients, args.patches, change, base)
            out(
                _line(f"PATCH ({args.clients} clients, {args.patches:,} requests)", rate, latencies)
            )

            def register(http: httpx.Client, client: int, i: int) -> None:
                response = http.post(
                    "/users", json={"username": f"{prefix}-new-{client}-{i}", "fullName": "New"}
                )
                assert response.status_code == 201, response.text

            post_rate, post_latencies = _concurrently(args.clients, args.patches, register, base)
            out(_line("reference: POST /users, one append and no read", post_rate, post_latencies))

            def refused(http: httpx.Client, client: int, i: int) -> None:
                response = http.patch(
                    f"/users/{prefix}-{client}", json={"fullName": "X"}, headers=admin
                )
                assert response.status_code == 428, response.text

            base_rate, base_latencies = _concurrently(args.clients, args.patches, refused, base)
            out(
                _line(
                    "baseline: PATCH answered 428 before the stream is read",
                    base_rate,
                    base_latencies,
                )
            )
            out(f"PATCH vs baseline: {rate / base_rate:.2f}x the throughput\n")

            hundred = _long_stream(esdb, base, http, 100)
            history = http.get(f"/users/{hundred}/events?limit=100").json()["events"]
            assert len(history) == 100
            middle = history[50]["recordedAt"]
            for label, path in (
                ("history, 100 events", f"/users/{hundred}/events?limit=100"),
                ("time travel ?atRevision=50, 100 events", f"/users/{hundred}?atRevision=50"),
                ("time travel ?asOf, 100 events", f"/users/{hundred}?asOf={middle}"),
            ):
                samples = _timed(args.reads, lambda i, p=path: _ok(http.get(p)))
                out(_line(f"{label} (1 client, {args.reads:,} requests)", None, samples))

            thousand = _long_stream(esdb, base, http, 1000)
            records: list[RecordedEvent] = list(esdb.get_stream(stream_name(thousand)))
            assert len(records) == 1000
            reads = _timed(50, lambda i: esdb.get_stream(stream_name(thousand)))
            out(_line("reading a 1,000-event stream over gRPC (50 times)", None, reads))
            folds = _timed(200, lambda i: load(thousand, records))
            out(_line("decoding and folding 1,000 events in-process (200 times)", None, folds))
            travel = _timed(200, lambda i: _ok(http.get(f"/users/{thousand}?atRevision=500")))
            out(_line("time travel of a 1,000-event stream over HTTP (200 times)", None, travel))
            esdb.close()
            http.close()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    return 0


def _ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


if __name__ == "__main__":
    sys.exit(main())

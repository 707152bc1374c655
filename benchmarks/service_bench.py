"""HTTP API speed over real HTTP: POST /users and GET /users/<username>.

    python -m benchmarks.service_bench [--posts 2000] [--gets 4000] [--clients 8]

Starts, as separate processes, the emulator (in memory), the service under gunicorn and the
worker, with an embedded PostgreSQL (or `DATABASE_URL`); then measures
- POST /users from `--clients` concurrent keep-alive clients: requests/s, p50, p99;
- GET /users/<username> from one client, one request at a time (unloaded): p50, p99;
- GET from `--clients` concurrent clients: requests/s, p50, p99.
- the baseline, in the same run and through the same client, gunicorn and Flask: GET of a
  name that cannot exist, answered 404 before any database work; so the ratio shows what
  reading PostgreSQL adds on top of the HTTP stack itself.
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
from pathlib import Path

import httpx

from benchmarks.support import free_port, percentile, postgres, wait_http
from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.settings import Settings
from worker.migrator import migrate

# Setup between phases (not measured) waits for the checkpoint of the default worker name.
DEFAULT_WORKER: str = Settings.model_fields["worker_name"].default


def _run(
    clients: int, total: int, request: Callable[[httpx.Client, int], None], base: str
) -> tuple[float, list[float]]:
    latencies: list[float] = []

    def work(worker: int) -> list[float]:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=10) as http:
            for i in range(worker, total, clients):
                started = time.perf_counter()
                request(http, i)
                mine.append(time.perf_counter() - started)
        return mine

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for part in pool.map(work, range(clients)):
            latencies.extend(part)
    return total / (time.perf_counter() - started), latencies


def _line(label: str, rate: float | None, latencies: list[float]) -> str:
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    rps = f"{rate:,.0f} req/s, " if rate is not None else ""
    return f"{label}: {rps}p50 {p50:.2f} ms, p99 {p99:.2f} ms\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--gets", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    out = sys.stdout.write
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as database_url:
        schema = f"bench_{uuid.uuid4().hex[:6]}"
        migrate(database_url, schema)
        esdb_port, http_port = free_port(), free_port()
        env = {
            **os.environ,
            "ESDB_CONNECTION_STRING": f"esdb://127.0.0.1:{esdb_port}?tls=false",
            "DATABASE_URL": database_url,
            "DATABASE_SCHEMA": schema,
            "HTTP_PORT": str(http_port),
            "LOG_LEVEL": "WARNING",
        }
        base = f"http://127.0.0.1:{http_port}"
        try:
            for command in (
                ["emulator", "--mem", "--port", str(esdb_port), "--log-level", "WARNING"],
                ["serve"],
                ["worker"],
            ):
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "usersvc_cli.main", *command], env=env)
                )
            wait_http(f"{base}/health", processes[1])
            prefix = uuid.uuid4().hex[:8]
            positions: list[int] = []

            def post(http: httpx.Client, i: int) -> None:
                response = http.post(
                    "/users", json={"username": f"{prefix}-{i}", "fullName": f"Bench User {i}"}
                )
                assert response.status_code == 201, response.text
                positions.append(response.json()["commitPosition"])

            rate, latencies = _run(args.clients, args.posts, post, base)
            out(
                _line(
                    f"POST /users ({args.clients} clients, {args.posts:,} requests)",
                    rate,
                    latencies,
                )
            )
            wait_for_checkpoint(database_url, schema, DEFAULT_WORKER, max(positions))

            def get(http: httpx.Client, i: int) -> None:
                response = http.get(f"/users/{prefix}-{i % args.posts}")
                assert response.status_code == 200, response.text

            _, get_unloaded = _run(1, args.gets, get, base)
            out(
                _line(
                    f"GET /users/<name> unloaded (1 client, {args.gets:,} requests)",
                    None,
                    get_unloaded,
                )
            )
            rate, latencies = _run(args.clients, args.gets, get, base)
            out(
                _line(
                    f"GET /users/<name> ({args.clients} clients, {args.gets:,} requests)",
                    rate,
                    latencies,
                )
            )

            def baseline(http: httpx.Client, i: int) -> None:
                assert http.get("/users/no%20such%20user").status_code == 404

            _, base_unloaded = _run(1, args.gets, baseline, base)
            out(_line("baseline: GET answered before the database, unloaded", None, base_unloaded))
            base_rate, base_latencies = _run(args.clients, args.gets, baseline, base)
            out(
                _line(
                    f"baseline: GET answered before the database ({args.clients} clients)",
                    base_rate,
                    base_latencies,
                )
            )
            out(
                f"GET vs baseline: {rate / base_rate:.2f}x the throughput, p99 unloaded "
                f"{percentile(get_unloaded, 99) / percentile(base_unloaded, 99):.2f}x\n"
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

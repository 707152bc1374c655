"""What metrics and logging cost: the same service with and without them, side by side.

    python -m benchmarks.ops_bench [--rounds 6] [--posts 600] [--gets 2000] [--clients 8]
                                   [--control]

Starts the emulator (in memory), an embedded PostgreSQL (or `DATABASE_URL`), one worker, and three
`usersvc serve` processes (gunicorn, default workers) on the same read model:
- "with": metrics on, LOG_FORMAT=json, LOG_LEVEL=INFO, the access log on (a line a request,
  written to a file as a container's log would be);
- "default": as "with" but without the access log (the shipped default);
- "without": metrics off, text logs at WARNING, no access log.
Rounds alternate between them (the order rotates each round) so that the machine's other load
falls on both alike; each round measures POST /users and GET /users/<username> from `--clients`
keep-alive clients (the standard library's http.client, which costs the client little): the
throughput, and the CPU time the service's processes spent per request (read from /proc, so
other load on the machine does not blur it). Then GET unloaded (one client, one request at a
time): p50 and p99 of both.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from benchmarks.support import free_port, percentile, postgres
from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.settings import Settings
from worker.migrator import migrate

VARIANTS = {
    "with": {
        "METRICS_ENABLED": "true",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": "true",
    },
    # The shipped defaults, as compose runs them: metrics and JSON lines, no access log.
    "default": {
        "METRICS_ENABLED": "true",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": "false",
    },
    "without": {
        "METRICS_ENABLED": "false",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
    },
}

Request = Callable[[http.client.HTTPConnection, int], None]


@dataclass
class Figures:
    post_rates: list[float] = field(default_factory=list)
    get_rates: list[float] = field(default_factory=list)
    # CPU seconds the service's processes spent per request, each round.
    post_cpu: list[float] = field(default_factory=list)
    get_cpu: list[float] = field(default_factory=list)
    unloaded: list[float] = field(default_factory=list)


_TICK = os.sysconf("SC_CLK_TCK")


# Setup between phases (not measured) waits for the checkpoint of the default worker name.
DEFAULT_WORKER: str = Settings.model_fields["worker_name"].default


def _cpu_seconds(master: int) -> float:
    """User + system CPU of a gunicorn master and its workers so far (Linux /proc)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if master in (pid, ppid):
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _measured(
    master: int, port: int, clients: int, total: int, request: Request
) -> tuple[float, float]:
    """Requests per second, and the service's CPU seconds per request."""
    cpu = _cpu_seconds(master)
    rate, _ = _run(port, clients, total, request)
    return rate, (_cpu_seconds(master) - cpu) / total


def _run(port: int, clients: int, total: int, request: Request) -> tuple[float, list[float]]:
    def work(worker: int) -> list[float]:
        mine: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for i in range(worker, total, clients):
                started = time.perf_counter()
                request(conn, i)
                mine.append(time.perf_counter() - started)
        finally:
            conn.close()
        return mine

    latencies: list[float] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for part in pool.map(work, range(clients)):
            latencies.extend(part)
    return total / (time.perf_counter() - started), latencies


def _post(prefix: str) -> Request:
    def post(conn: http.client.HTTPConnection, i: int) -> None:
        body = orjson.dumps({"username": f"{prefix}-{i}", "fullName": f"Bench User {i}"})
        conn.request("POST", "/users", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status

    return post


def _get(names: list[str]) -> Request:
    def get(conn: http.client.HTTPConnection, i: int) -> None:
        conn.request("GET", f"/users/{names[i % len(names)]}")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    return get


def _wait_http(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/livez")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never answered")


def _head(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/readyz")
    body = orjson.loads(conn.getresponse().read())
    conn.close()
    return int(body["checks"]["eventStore"]["headPosition"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--unloaded", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--control",
        action="store_true",
        help="run 'with' exactly as 'without': the difference is then the noise of the machine",
    )
    args = parser.parse_args()
    variants = {name: VARIANTS["without"] for name in VARIANTS} if args.control else VARIANTS
    out = sys.stdout.write
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres(Path(tmp) / "pg") as database_url:
        schema = f"bench_{uuid.uuid4().hex[:6]}"
        migrate(database_url, schema)
        esdb_port = free_port()
        env = {
            **os.environ,
            "ESDB_CONNECTION_STRING": f"esdb://127.0.0.1:{esdb_port}?tls=false",
            "DATABASE_URL": database_url,
            "DATABASE_SCHEMA": schema,
            "LOG_LEVEL": "WARNING",
        }
        ports = {name: free_port() for name in VARIANTS}
        try:

            def start(args: list[str], extra: dict[str, str], log: str) -> None:
                with open(Path(tmp) / log, "wb") as sink:
                    processes.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "usersvc_cli.main", *args],
                            env={**env, **extra},
                            stdout=sink,
                            stderr=sink,
                        )
                    )

            start(["emulator", "--mem", "--port", str(esdb_port)], {}, "emulator.log")
            start(["worker"], {}, "worker.log")
            for name, settings in variants.items():
                start(["serve"], {**settings, "HTTP_PORT": str(ports[name])}, f"{name}.log")
            masters = {name: processes[2 + i].pid for i, name in enumerate(VARIANTS)}
            for index, name in enumerate(VARIANTS):
                _wait_http(ports[name], processes[2 + index])
            figures = {name: Figures() for name in VARIANTS}
            names: list[str] = []
            for round_ in range(args.rounds):
                # Each variant takes each place in the order in turn.
                shift = round_ % len(VARIANTS)
                order = [*list(VARIANTS)[shift:], *list(VARIANTS)[:shift]]
                for name in order:
                    prefix = f"{name}{round_}-{uuid.uuid4().hex[:6]}"
                    rate, cpu = _measured(
                        masters[name], ports[name], args.clients, args.posts, _post(prefix)
                    )
                    figures[name].post_rates.append(rate)
                    figures[name].post_cpu.append(cpu)
                    names.extend(f"{prefix}-{i}" for i in range(0, args.posts, 7))
                wait_for_checkpoint(database_url, schema, DEFAULT_WORKER, _head(ports["with"]))
                for name in order:
                    rate, cpu = _measured(
                        masters[name], ports[name], args.clients, args.gets, _get(names)
                    )
                    figures[name].get_rates.append(rate)
                    figures[name].get_cpu.append(cpu)
            for name in VARIANTS:
                _, latencies = _run(ports[name], 1, args.unloaded, _get(names))
                figures[name].unloaded = latencies
            _report(out, figures, args)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
            with_log = Path(tmp) / "with.log"
            out(f"'with' wrote {sum(1 for _ in with_log.open('rb')):,} log lines\n")
    return 0


def _report(
    out: Callable[[str], object], figures: dict[str, Figures], args: argparse.Namespace
) -> None:
    out(
        f"{args.rounds} rounds alternating; each POST {args.posts:,} and GET {args.gets:,} "
        f"requests from {args.clients} clients\n"
    )
    median = statistics.median
    for name, f in figures.items():
        out(
            f"{name:>8}: POST {median(f.post_rates):,.0f} req/s, "
            f"{median(f.post_cpu) * 1e6:,.0f} us CPU/request "
            f"(rounds {', '.join(f'{r:,.0f}' for r in f.post_rates)} req/s); "
            f"GET {median(f.get_rates):,.0f} req/s, {median(f.get_cpu) * 1e6:,.0f} us CPU/request "
            f"(rounds {', '.join(f'{r:,.0f}' for r in f.get_rates)} req/s); "
            f"GET unloaded p50 {percentile(f.unloaded, 50) * 1000:.2f} ms, "
            f"p99 {percentile(f.unloaded, 99) * 1000:.2f} ms\n"
        )
    without = figures["without"]
    out("cost against 'without' (medians of the rounds; target at most 10%):\n")
    for name in ("with", "default"):
        f = figures[name]
        out(
            f"  {name}: throughput "
            f"POST {1 - median(f.post_rates) / median(without.post_rates):+.1%}"
            f", GET {1 - median(f.get_rates) / median(without.get_rates):+.1%}; service CPU per "
            f"request POST {median(f.post_cpu) / median(without.post_cpu) - 1:+.1%}, "
            f"GET {median(f.get_cpu) / median(without.get_cpu) - 1:+.1%}; "
            f"GET p99 unloaded {percentile(f.unloaded, 99) * 1000:.2f} ms (target: at most 5 ms)\n"
        )


if __name__ == "__main__":
    sys.exit(main())

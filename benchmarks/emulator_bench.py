"""Emulator speed, with a bare grpcio baseline measured in the same run.

    python -m benchmarks.emulator_bench [--events 50000] [--appends 2000] [--batches 300]

Prints, one line each:
- baseline: a bare grpcio server streaming pre-serialized messages of the size of one event's
  ReadResp to a bare client (no protobuf work on either side): the ceiling of this machine;
- read $all: `read_all` of every event into an esdbclient consumer, events/s and ratio to baseline;
- catch-up: `subscribe_to_all` from the start until caught up, events/s and ratio;
- sequential durable single-event appends (on-disk store, fdatasync per append), appends/s;
- batches of 100 events (on-disk store), events/s;
- single-event appends from 8 clients at once (on-disk store, group commit), appends/s.
The emulator and the baseline server each run in a process of their own (as the emulator runs
in practice), so that client and server do not share one interpreter lock. Machine load from
other processes makes every figure noisy; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc
from esdbclient import CaughtUp, EventStoreDBClient, NewEvent, StreamState

from esdb_emulator.model import Record
from esdb_emulator.rpc.wire import event_response

BASELINE_METHOD = "/bench.Bare/Stream"
CONCURRENT_CLIENTS = 8
PAYLOAD = json.dumps({"username": "someone", "email": "someone@example.com", "n": 0}).encode()


def new_event() -> NewEvent:
    return NewEvent(type="user-created", data=PAYLOAD, metadata=b'{"correlation":"x"}')


@contextmanager
def emulator(*storage: str) -> Iterator[str]:
    """`python -m esdb_emulator` in a child process; yields its connection string."""
    port = free_port()
    command = [sys.executable, "-m", "esdb_emulator", "--port", str(port), *storage]
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as process:
        try:
            url = f"esdb://127.0.0.1:{port}?tls=false"
            wait_until_serving(url)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        client = EventStoreDBClient(url)  # connects lazily: a call shows the server is up
        try:
            client.get_commit_position()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return
        finally:
            client.close()


def serve_baseline(port: int, size: int, count: int) -> None:
    """The bare grpcio server (child process): streams `count` messages of `size` bytes."""
    message = b"x" * size

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(count):
            yield message

    handler = grpc.method_handlers_generic_handler(
        "bench.Bare", {"Stream": grpc.unary_stream_rpc_method_handler(stream)}
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal.sigwait({signal.SIGTERM})
    server.stop(None)


def baseline(size: int, count: int) -> float:
    """Messages/s of a bare grpcio server-streaming call, bytes in and bytes out."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.emulator_bench", "--serve-baseline"]
    command += [str(port), str(size), str(count)]
    with subprocess.Popen(command) as process:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=20)
                call = channel.unary_stream(BASELINE_METHOD)
                started = time.perf_counter()
                received = sum(1 for _ in call(b""))
                elapsed = time.perf_counter() - started
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    assert received == count
    return count / elapsed


def read_rates(count: int) -> tuple[float, float, int]:
    with emulator("--mem") as url:
        client = EventStoreDBClient(url)
        try:
            for start in range(0, count, 500):
                batch = [new_event() for _ in range(min(500, count - start))]
                client.append_to_stream(
                    f"user-{start}", current_version=StreamState.NO_STREAM, events=batch
                )
            sample = next(iter(client.read_all(limit=1)))
            record = Record(
                sample.commit_position or 0,
                sample.stream_name,
                sample.stream_position,
                sample.id,
                sample.type,
                True,
                sample.data,
                sample.metadata,
                0,
            )
            size = len(event_response(record, uuid_as_string=True))
            started = time.perf_counter()
            read = sum(1 for _ in client.read_all())
            read_rate = read / (time.perf_counter() - started)
            started = time.perf_counter()
            caught = 0
            with client.subscribe_to_all(include_caught_up=True) as subscription:
                for item in subscription:
                    if isinstance(item, CaughtUp):
                        break
                    caught += 1
            catch_rate = caught / (time.perf_counter() - started)
        finally:
            client.close()
    assert read == caught == count, (read, caught, count)
    return read_rate, catch_rate, size


def append_rates(appends: int, batches: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as directory, emulator("--data-dir", directory) as url:
        client = EventStoreDBClient(url)
        try:
            stream = f"single-{uuid.uuid4()}"
            client.append_to_stream(
                stream, current_version=StreamState.NO_STREAM, events=new_event()
            )
            started = time.perf_counter()
            for revision in range(appends):
                client.append_to_stream(stream, current_version=revision, events=new_event())
            single = appends / (time.perf_counter() - started)
            stream = f"batch-{uuid.uuid4()}"
            started = time.perf_counter()
            for _ in range(batches):
                client.append_to_stream(
                    stream,
                    current_version=StreamState.ANY,
                    events=[new_event() for _ in range(100)],
                )
            batched = batches * 100 / (time.perf_counter() - started)
            concurrent = concurrent_rate(url, appends)
        finally:
            client.close()
    return single, batched, concurrent


def concurrent_rate(url: str, appends: int) -> float:
    """Single-event appends from several clients at once (they share fdatasyncs)."""
    clients = [EventStoreDBClient(url) for _ in range(CONCURRENT_CLIENTS)]

    def run(client: EventStoreDBClient) -> None:
        stream = f"concurrent-{uuid.uuid4()}"
        for _ in range(appends // CONCURRENT_CLIENTS):
            client.append_to_stream(stream, current_version=StreamState.ANY, events=new_event())

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
            list(pool.map(run, clients))
        return appends // CONCURRENT_CLIENTS * CONCURRENT_CLIENTS / (time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--serve-baseline", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(*args.serve_baseline)
        return 0
    read_rate, catch_rate, size = read_rates(args.events)
    bare = baseline(size, args.events)
    single, batched, concurrent = append_rates(args.appends, args.batches)
    out = sys.stdout
    out.write(f"events: {args.events}, ReadResp size {size} bytes\n")
    out.write(f"baseline bare grpcio stream: {bare:,.0f} messages/s\n")
    out.write(f"read $all (esdbclient):      {read_rate:,.0f} events/s ({read_rate / bare:.2f}x)\n")
    out.write(
        f"catch-up subscription:       {catch_rate:,.0f} events/s ({catch_rate / bare:.2f}x)\n"
    )
    out.write(f"sequential durable appends:  {single:,.0f} appends/s\n")
    out.write(f"batches of 100 (durable):    {batched:,.0f} events/s\n")
    out.write(
        f"{CONCURRENT_CLIENTS} concurrent appenders:      {concurrent:,.0f} appends/s (durable)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

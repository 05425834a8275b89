"""Benchmark of the Redis-streams bus on this machine (a redis-server started for the run).

Measures (0) draining a backlog: N envelopes already in the stream, one consumer handles them
(a no-op handler), per second; (1) one-way throughput: one sender publishes N envelopes while
one consumer in the same process handles them, from the first send to the last handled (each
message then tends to cost the consumer a whole read, check and acknowledge cycle);
(2) request/reply: `--in-flight` concurrent requests through a responder that replies, round
trips per second; (3) the latency of sequential request/reply round trips (p50, p99). Each with
HMAC signing on (a key ring on both sides) and off.

Usage: python benchmarks/bus_bench.py [--messages N] [--in-flight K] [--sequential S] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from raft_manager.adapters import Bus, Envelope, Handlers, Reply
from raft_manager.bench.redis_server import redis_server
from raft_manager.server.config import AdaptersConfig
from raft_manager.transport.keys import Key, KeyRing

ROLE = "performance-benchmarker"


class Ping(BaseModel):
    n: int


async def measure(
    url: str, signed: bool, messages: int, in_flight: int, sequential: int
) -> dict[str, Any]:
    config = AdaptersConfig(redis_url=url, stream_maxlen=max(10_000, 2 * messages))
    ring = KeyRing([Key("bench", b"k" * 32)]) if signed else None
    handled = 0

    async def sink(_envelope: Envelope, _ping: Ping) -> None:
        nonlocal handled
        handled += 1

    async def echo(_envelope: Envelope, ping: Ping) -> Reply:
        return Reply("bench.pong", {"n": ping.n})

    one_way, request_reply = Handlers(), Handlers()
    one_way.add("bench.ping", Ping, sink)
    request_reply.add("bench.request", Ping, echo)
    asker = Bus(config, cluster_id="bench", identity="asker", keyring=ring)
    worker = Bus(config, cluster_id="bench", identity="worker", keyring=ring)
    result: dict[str, Any] = {"signed": signed}
    async with asker, worker:
        for n in range(messages):
            await asker.send("quorum-manager", "bench.ping", Ping(n=n))
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            await group.start(worker.serve("quorum-manager", one_way, name="drain").run)
            while handled < messages:
                await anyio.sleep(0.001)
            group.cancel_scope.cancel()
        result["backlog_per_s"] = round(messages / (time.perf_counter() - started))
        handled = 0
        async with anyio.create_task_group() as group:
            await group.start(worker.serve(ROLE, one_way, name="sink").run)
            started = time.perf_counter()
            for n in range(messages):
                await asker.send(ROLE, "bench.ping", Ping(n=n))
            while handled < messages:
                await anyio.sleep(0.001)
            result["one_way_per_s"] = round(messages / (time.perf_counter() - started))
            group.cancel_scope.cancel()
    asker = Bus(config, cluster_id="bench", identity="asker2", keyring=ring)
    worker = Bus(config, cluster_id="bench", identity="worker2", keyring=ring)
    async with asker, worker, anyio.create_task_group() as group:
        await group.start(asker.reply_consumer().run)
        await group.start(worker.serve("raft-manager", request_reply).run)

        async def client(count: int) -> None:
            for n in range(count):
                await asker.request("raft-manager", "bench.request", Ping(n=n), timeout=30)

        started = time.perf_counter()
        async with anyio.create_task_group() as clients:
            for _ in range(in_flight):
                clients.start_soon(client, messages // in_flight)
        total = (messages // in_flight) * in_flight
        result["request_reply_per_s"] = round(total / (time.perf_counter() - started))
        latencies = []
        for n in range(sequential):
            began = time.perf_counter()
            await asker.request("raft-manager", "bench.request", Ping(n=n), timeout=30)
            latencies.append((time.perf_counter() - began) * 1000)
        result["sequential_p50_ms"] = round(statistics.median(latencies), 3)
        result["sequential_p99_ms"] = round(statistics.quantiles(latencies, n=100)[98], 3)
        group.cancel_scope.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as url:
        results = [
            anyio.run(measure, url, signed, args.messages, args.in_flight, args.sequential)
            for signed in (False, True)
        ]
    if args.json:
        print(json.dumps(results))
        return
    for result in results:
        print(
            f"signing {'on ' if result['signed'] else 'off'}: backlog {result['backlog_per_s']}/s, "
            f"one-way {result['one_way_per_s']}/s, "
            f"request/reply {result['request_reply_per_s']}/s ({args.in_flight} in flight), "
            f"sequential p50 {result['sequential_p50_ms']} ms p99 {result['sequential_p99_ms']} ms"
        )


if __name__ == "__main__":
    main()

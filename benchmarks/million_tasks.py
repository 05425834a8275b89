"""Benchmark: a million tasks through a real 3-node cluster with snapshots on, and what it costs
the nodes in memory and in restart time.

A 3-node cluster over TCP (node processes, every setting at its default: fsync on, a snapshot
every 10,000 entries, finished tasks kept up to 100,000), driven by `--workers` agents in this
process over one RaftClient, each looping submit -> claim -> complete (200-byte payloads), so
about `--workers` tasks are open at any time and every task goes through the whole cycle. A
sampler reads every node's resident set size (VmRSS in /proc) every 0.25 s; the report gives
each node's largest. When the tasks are through, each node in turn (a follower first, then the
leader) is SIGKILLed and started again: its restart time runs from the new process's start to
its first answer that shows it serving again (its status names a leader and it has applied
everything the cluster had committed when it was killed, read through it with a stale
`task.get` of the last task completed). Before the kills, every node's state digest is compared
at one applied index.

The issue's bar: every node's RSS under 300 MB, a restarted node serving within 2 s.

Usage: python benchmarks/million_tasks.py [--tasks N] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from raft_manager.bench.protocol_system import ProtocolSystem
from raft_manager.bench.raft_manager_system import raft_manager_system
from raft_manager.bench.system import wait_settled
from raft_manager.client import ClientError, RaftClient
from raft_manager.client.swarm import SwarmClient

USE_UVLOOP = importlib.util.find_spec("uvloop") is not None  # as the nodes do
PAYLOAD = {"pad": "x" * 188}  # 200 bytes of JSON
SAMPLE_SECONDS = 0.25
RSS_BAR_MB = 300
RESTART_BAR_S = 2.0
RESTART_DEADLINE_S = 60.0  # bounded: a node that has not served by then counts as failed
PROGRESS_EVERY = 50_000


def rss_mb(pid: int) -> float | None:
    """The resident set size of a process in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler:
    """The largest RSS seen per node, sampled until cancelled."""

    def __init__(self, system: ProtocolSystem) -> None:
        self.system = system
        self.peak: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            for node, pid in self.system.pids.items():
                mb = rss_mb(pid)
                if mb is not None:
                    self.peak[node] = max(self.peak.get(node, 0.0), mb)
            await anyio.sleep(SAMPLE_SECONDS)


async def run_tasks(swarm: SwarmClient, tasks: int, workers: int, quiet: bool) -> dict[str, Any]:
    """`tasks` full cycles by `workers` agents; the count of each outcome and the last task."""
    counts = {"submitted": 0, "completed": 0, "empty_claims": 0}
    remaining = [tasks]
    last: list[str] = [""]
    started = time.perf_counter()

    async def agent(name: str) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await swarm.submit_task(PAYLOAD)
            counts["submitted"] += 1
            while True:
                claim = await swarm.claim_task(name, lease_seconds=300)
                if claim["task_id"] is not None:
                    break
                counts["empty_claims"] += 1  # cannot happen (see below); counted if it does
                await anyio.sleep(0.01)
            await swarm.complete_task(claim["task_id"], name, claim["fencing_token"])
            counts["completed"] += 1
            last[0] = claim["task_id"]
            if not quiet and counts["completed"] % PROGRESS_EVERY == 0:
                rate = counts["completed"] / (time.perf_counter() - started)
                print(f"  {counts['completed']:,} tasks done, {rate:,.0f}/s", flush=True)

    # Each agent claims only after its own submit committed, and holds one claim at a time, so
    # the claims applied never outnumber the submits: a claim always finds a pending task.
    async with anyio.create_task_group() as group:
        for n in range(workers):
            group.start_soon(agent, f"agent-{n}")
    seconds = time.perf_counter() - started
    return {
        **counts,
        "seconds": round(seconds, 1),
        "tasks_per_s": round(tasks / seconds),
        **{"last_task": last[0]},
    }


async def digests_agree(system: ProtocolSystem, client: RaftClient) -> bool:
    """Every node's state digest, read once all have applied the same index."""
    for _ in range(200):
        answers = [await client.status(a, digest=True) for a in system.addresses]
        if len({answer["applied_index"] for answer in answers}) == 1:
            return len({answer["state_digest"] for answer in answers}) == 1
        await anyio.sleep(0.05)
    return False


async def restart_time(
    system: ProtocolSystem, client: RaftClient, node: str, last_task: str
) -> float | None:
    """SIGKILL `node`, start it again, and time it until it serves (see the top)."""
    address = system.address_of(node)
    committed = max([(await client.status(a))["commit_index"] for a in system.addresses])
    system.kill(node)
    system.restart(node)
    started = time.perf_counter()
    async with RaftClient([address], timeout=0.5) as own:
        swarm = SwarmClient(own)
        while time.perf_counter() - started < RESTART_DEADLINE_S:
            system.check()
            try:
                status = await own.status(address)
                if status["leader"] is not None and status["applied_index"] >= committed:
                    await swarm.get_task(last_task, stale=True)
                    return time.perf_counter() - started
            except (ClientError, TimeoutError, OSError):
                pass
            await anyio.sleep(0.01)
    return None


async def measure(system: ProtocolSystem, tasks: int, workers: int, quiet: bool) -> dict[str, Any]:
    await wait_settled(system)
    sampler = RssSampler(system)
    report: dict[str, Any] = {"tasks": tasks, "workers": workers}
    async with anyio.create_task_group() as sampling:
        sampling.start_soon(sampler.run)
        async with RaftClient(system.addresses, timeout=30.0) as client:
            report |= await run_tasks(SwarmClient(client), tasks, workers, quiet)
            report["digests_agree"] = await digests_agree(system, client)
            leader = await system.leader()
            follower = next(node for node in system.nodes if node != leader)
            report["restart_s"] = {}
            for node, role in ((follower, "follower"), (leader, "leader")):
                assert node is not None
                seconds = await restart_time(system, client, node, report["last_task"])
                report["restart_s"][role] = None if seconds is None else round(seconds, 3)
                await wait_settled(system)
        sampling.cancel_scope.cancel()
    report["peak_rss_mb"] = {node: round(mb, 1) for node, mb in sorted(sampler.peak.items())}
    peak = max(sampler.peak.values())
    restarts = list(report["restart_s"].values())
    report["holds"] = {
        "rss_under_300_mb": peak < RSS_BAR_MB,
        "restart_within_2_s": all(s is not None and s <= RESTART_BAR_S for s in restarts),
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.tasks < 1 or args.workers < 1:
        parser.error("--tasks and --workers must be at least 1")
    with (
        tempfile.TemporaryDirectory(prefix="million-tasks-") as tmp,
        raft_manager_system(Path(tmp), 3, "tcp") as system,
    ):
        report = anyio.run(
            measure,
            system,
            args.tasks,
            args.workers,
            args.json,
            backend_options={"use_uvloop": USE_UVLOOP},
        )
    report["load_average"] = os.getloadavg()
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{report['tasks']:,} tasks through 3 nodes in {report['seconds']} s "
        f"({report['tasks_per_s']:,}/s) by {report['workers']} agents"
    )
    print(f"peak RSS (MB): {report['peak_rss_mb']}  (bar {RSS_BAR_MB} MB)")
    print(f"restart to serving (s): {report['restart_s']}  (bar {RESTART_BAR_S} s)")
    print(
        f"state digests agree: {report['digests_agree']}; empty claims: "
        f"{report['empty_claims']}; holds: {report['holds']}"
    )


if __name__ == "__main__":
    main()

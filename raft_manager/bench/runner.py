"""One bench run: each system started in turn, measured by the four workloads, and stopped.

Theory of operation: `run_bench` measures raft-manager first, then each peer named in the
plan's `compare` that can run here; a peer that cannot (PySyncObj not importable, no etcd
binary) is skipped with the reason, never given numbers. Each system runs in its own folder
under the run's folder: started, settled, warmed up (WARMUP_SECONDS of writes with `in_flight`
outstanding, not counted: connections opened, caches filled), then sequential latency,
throughput with `in_flight` writes outstanding, latency at `rate` writes/s offered (open
loop), and last the destructive leader-kill trials. Its processes are stopped on every way out;
a system that cannot start or settle is recorded as failed with the reason, and the run goes on
with the next one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from . import workloads
from .etcd_system import etcd_missing, etcd_system
from .pysyncobj_system import pysyncobj_missing, pysyncobj_system
from .raft_manager_system import NAME as RAFT_MANAGER
from .raft_manager_system import raft_manager_system
from .system import BenchError, System, wait_settled
from .workloads import Samples

WARMUP_SECONDS = 0.5
PEERS = ("pysyncobj", "etcd")
TRANSPORTS = ("tcp", "redis")


@dataclass(frozen=True, slots=True)
class BenchPlan:
    nodes: int = 3
    transport: str = "tcp"  # raft-manager's
    seconds: float = 5.0  # each timed workload
    trials: int = 5  # leader kills
    compare: tuple[str, ...] = PEERS
    in_flight: int = 1000
    rate: float = 5000.0  # writes/s offered in the open-loop workload


@dataclass(slots=True)
class SystemResult:
    name: str
    fsync: bool
    setup: str
    sequential: Samples
    throughput: Samples
    at_load: Samples
    failover: Samples

    @property
    def failed_writes(self) -> int:
        parts = (self.sequential, self.throughput, self.at_load, self.failover)
        return sum(samples.failed for samples in parts)


@dataclass(slots=True)
class BenchReport:
    plan: BenchPlan
    results: list[SystemResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # system -> why it has no numbers
    failed: dict[str, str] = field(default_factory=dict)  # system -> what went wrong
    started: float = field(default_factory=time.time)
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)


Launch = Callable[[Path, BenchPlan], AbstractContextManager[System]]


def _raft_manager(directory: Path, plan: BenchPlan) -> AbstractContextManager[System]:
    return raft_manager_system(directory, plan.nodes, plan.transport)


def _pysyncobj(directory: Path, plan: BenchPlan) -> AbstractContextManager[System]:
    return pysyncobj_system(directory, plan.nodes)


def _etcd(directory: Path, plan: BenchPlan) -> AbstractContextManager[System]:
    return etcd_system(directory, plan.nodes)


SYSTEMS: dict[str, tuple[Callable[[], str | None], Launch]] = {
    RAFT_MANAGER: (lambda: None, _raft_manager),
    "pysyncobj": (pysyncobj_missing, _pysyncobj),
    "etcd": (etcd_missing, _etcd),
}


def planned(plan: BenchPlan) -> Iterator[str]:
    yield RAFT_MANAGER
    yield from plan.compare


async def run_bench(plan: BenchPlan, directory: Path, say: Callable[[str], None]) -> BenchReport:
    report = BenchReport(plan)
    for name in planned(plan):
        missing, launch = SYSTEMS[name]
        why = missing()
        if why is not None:
            report.skipped[name] = why
            say(f"{name}: {why}; skipped")
            continue
        folder = directory / name
        folder.mkdir(parents=True, exist_ok=True)
        say(f"{name}: starting {plan.nodes} nodes in {folder}")
        try:
            with launch(folder, plan) as system:
                report.results.append(await measure(system, plan, say))
        except BenchError as error:
            report.failed[name] = str(error)
            say(f"{name}: failed: {error}")
    return report


async def measure(system: System, plan: BenchPlan, say: Callable[[str], None]) -> SystemResult:
    await wait_settled(system)
    async with system.writer() as write:
        await workloads.throughput(write, plan.in_flight, WARMUP_SECONDS)
        await anyio.sleep(0.2)  # let the warm-up's backlog drain
        say(f"{system.name}: sequential writes for {plan.seconds:g} s")
        sequential = await workloads.sequential(write, plan.seconds)
        say(f"{system.name}: {plan.in_flight:,} writes in flight for {plan.seconds:g} s")
        throughput = await workloads.throughput(write, plan.in_flight, plan.seconds)
        say(f"{system.name}: {plan.rate:,.0f} writes/s offered for {plan.seconds:g} s")
        at_load = await workloads.open_loop(write, plan.rate, plan.seconds)
        say(f"{system.name}: {plan.trials} leader kill(s), median time to a committed write")
        failover = await workloads.failover(system, write, plan.trials)
    return SystemResult(
        system.name, system.fsync, system.setup, sequential, throughput, at_load, failover
    )

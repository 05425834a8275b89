"""The four measurements, each a bounded loop over a system's `write` (one committed write).

Theory of operation:
- throughput: `in_flight` writers write back to back for `seconds`; completed writes divided
  by the time until the last of them returned.
- sequential: one write at a time for `seconds`; every write's latency.
- open loop: writes start on a fixed schedule, `rate` per second for `seconds`, whether or not
  the earlier ones have returned; a write's latency runs from its scheduled start, not from when
  it was actually sent, so a client or a system that stalls shows as latency rather than as
  fewer samples (no coordinated omission).
- failover: with the cluster settled and the writer talking to the leader, SIGKILL the leader
  and time until a write issued right after the kill is committed; then restart the killed node
  and wait for the cluster to settle before the next trial.
A write that fails (WriteFailed) is counted, not retried again: the writers already retry. In
the percentiles a failed write ranks above every latency (it never committed), so a p99 that
falls among the failures is unknown (None: beyond the write timeout), never flattered.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import anyio

from .system import System, Write, WriteFailed, wait_settled

SCHEDULER_TICK = 0.001  # the open-loop scheduler wakes up this often and starts what is due


@dataclass
class Samples:
    """What one workload saw: latencies in seconds, writes completed and failed, wall time."""

    latencies: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def quantile(self, fraction: float) -> float | None:
        """The nearest-rank quantile of the latencies in seconds, failed writes ranking above
        every latency (they never committed): None when it falls among them, or without any
        write at all."""
        total = len(self.latencies) + self.failed
        if not total:
            return None
        rank = max(1, math.ceil(fraction * total))
        return sorted(self.latencies)[rank - 1] if rank <= len(self.latencies) else None

    @property
    def median(self) -> float | None:
        return self.quantile(0.5)

    def percentile_ms(self, fraction: float) -> float | None:
        value = self.quantile(fraction)
        return None if value is None else value * 1000

    def record(self, started: float, ok: bool) -> None:
        if ok:
            self.latencies.append(time.perf_counter() - started)
            self.completed += 1
        else:
            self.failed += 1


async def _attempt(write: Write) -> bool:
    try:
        await write()
    except WriteFailed:
        return False
    return True


async def throughput(write: Write, in_flight: int, seconds: float) -> Samples:
    samples = Samples()
    started = time.perf_counter()
    deadline = started + seconds

    async def writer() -> None:
        while time.perf_counter() < deadline:
            if await _attempt(write):
                samples.completed += 1
            else:
                samples.failed += 1

    async with anyio.create_task_group() as group:
        for _ in range(in_flight):
            group.start_soon(writer)
    samples.seconds = time.perf_counter() - started
    return samples


async def sequential(write: Write, seconds: float) -> Samples:
    samples = Samples()
    started = time.perf_counter()
    while (now := time.perf_counter()) < started + seconds:
        samples.record(now, await _attempt(write))
    samples.seconds = time.perf_counter() - started
    return samples


async def open_loop(write: Write, rate: float, seconds: float) -> Samples:
    samples = Samples()
    total = max(1, round(rate * seconds))
    started = time.perf_counter()

    async def one(scheduled: float) -> None:
        samples.record(scheduled, await _attempt(write))

    async with anyio.create_task_group() as group:
        sent = 0
        while sent < total:
            due = min(total, math.floor((time.perf_counter() - started) * rate) + 1)
            for index in range(sent, due):
                group.start_soon(one, started + index / rate)
            sent = due
            await anyio.sleep(SCHEDULER_TICK)
    samples.seconds = time.perf_counter() - started
    return samples


async def failover(system: System, write: Write, trials: int) -> Samples:
    """Seconds from the leader's SIGKILL to the first write committed after it, per trial."""
    samples = Samples()
    for _ in range(trials):
        await wait_settled(system)
        await _attempt(write)  # the writer learns who leads
        leader = await system.leader()
        if leader is None:  # lost again since it settled: count the trial as failed
            samples.failed += 1
            continue
        system.kill(leader)
        killed = time.perf_counter()
        committed = await _attempt(write)
        samples.record(killed, committed)
        system.restart(leader)
    await wait_settled(system)
    return samples

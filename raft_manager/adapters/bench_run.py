"""A bounded benchmark a Performance Benchmarker can ask for: committed writes through the
cluster, as many as asked or as fast as possible until the time is up.

Theory of operation: `concurrency` writers, each committing one ledger `clock` command at a
time through one client (pipelined on its connections; the leader batches what arrives
together). A `clock` entry is a real replicated, fsynced, applied entry that changes nothing but
the ledger's time, so a benchmark leaves no state behind and puts nothing on the change feed.
The run ends when `count` writes have been issued and answered, or when `duration_s` has
passed: then the writes still in flight are abandoned (they may still commit) and not counted.
Latency is measured per write, from sending to the answer that it was applied on the leader;
quantiles are nearest-rank.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import anyio

from raft_manager.client import ClientError, RaftClient
from raft_manager.ledger.commands import Clock

from .messages import BenchLatency, BenchRequest, BenchResult


def _rank(ordered: Sequence[float], fraction: float) -> int | None:
    if not ordered:
        return None
    return round(ordered[max(1, math.ceil(fraction * len(ordered))) - 1] * 1_000_000)


async def run_benchmark(client: RaftClient, request: BenchRequest, node_id: str) -> BenchResult:
    latencies: list[float] = []
    issued = failed = 0
    command = Clock()

    async def writer() -> None:
        nonlocal issued, failed
        while issued < request.count:
            issued += 1
            sent = time.perf_counter()
            try:
                await client.command(command)
            except (ClientError, TimeoutError):
                failed += 1
                continue
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    with anyio.move_on_after(request.duration_ms / 1000) as limit:
        async with anyio.create_task_group() as group:
            for _ in range(request.concurrency):
                group.start_soon(writer)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return BenchResult(
        ok=True,
        node=node_id,
        count=request.count,
        concurrency=request.concurrency,
        duration_ms=request.duration_ms,
        completed=len(latencies),
        failed=failed,
        elapsed_ms=round(elapsed * 1000),
        per_s=round(len(latencies) / elapsed) if elapsed > 0 else 0,
        latency=BenchLatency(
            p50_us=_rank(latencies, 0.5),
            p99_us=_rank(latencies, 0.99),
            max_us=_rank(latencies, 1.0),
        ),
        stopped_by="duration" if limit.cancelled_caught else "count",
    )

"""The Performance Benchmarker adapter: metrics snapshots out, benchmark runs on request.

Theory of operation: every node publishes its own `bench.metrics` every metrics_period_s (its
fsync latency and its view of the commit index are its own; proposals and commit latency are
counted by whichever node leads), computed from two readings of its Prometheus registry
(metrics_snapshot.py). `bench.run_request` is served by every node: the run (bench_run.py) is
bounded by count and by duration, and the duration by the request budget, so the answer
(`bench.run_result`) always comes before the bus would redeliver the request; a node runs one
benchmark at a time and answers `busy` to a second. A request out of bounds is answered with
the reason, and nothing runs.
"""

from __future__ import annotations

import anyio

from raft_manager.client import RaftClient

from .bench_run import run_benchmark
from .envelope import Envelope
from .handlers import Handlers, Reply
from .messages import BENCH_METRICS, BENCH_RESULT, BENCH_RUN, BenchRequest, BenchResult
from .metrics_snapshot import Reading, read, snapshot
from .node import AdapterNode, repeat

PERFORMANCE_BENCHMARKER = "performance-benchmarker"


class BenchmarkerAdapter:
    def __init__(self, node: AdapterNode) -> None:
        self.node = node
        self._last: Reading | None = None
        self._running = False

    def register(self, shared: Handlers, own: Handlers) -> None:
        shared.add(BENCH_RUN, BenchRequest, self.run_request, invalid=self._bad_request)

    async def run(self) -> None:
        await repeat(BENCH_METRICS, self.node.settings.metrics_period_s, self.publish)

    async def publish(self) -> None:
        reading = read(self.node.parts.metrics.registry, anyio.current_time())
        last, self._last = self._last, reading
        if last is not None:
            metrics = snapshot(self.node.node_id, last, reading)
            await self.node.bus.send(PERFORMANCE_BENCHMARKER, BENCH_METRICS, metrics)

    async def run_request(self, envelope: Envelope, request: BenchRequest) -> Reply:
        budget_ms = int(self.node.budget_s * 1000)
        if request.duration_ms > budget_ms:
            return self._refused("rejected", f"duration_ms may be at most {budget_ms} here")
        if self._running:
            return self._refused("busy", "a benchmark is running on this node")
        self._running = True
        try:
            addresses = [self.node.own_address, *self.node.client.addresses]
            async with RaftClient(list(dict.fromkeys(addresses))) as client:
                result = await run_benchmark(client, request, self.node.node_id)
        finally:
            self._running = False
        return Reply(BENCH_RESULT, result)

    def _refused(self, code: str, reason: str) -> Reply:
        return Reply(
            BENCH_RESULT, BenchResult(ok=False, error=code, reason=reason, node=self.node.node_id)
        )

    def _bad_request(self, problems: str) -> Reply:
        return self._refused("bad-payload", problems)

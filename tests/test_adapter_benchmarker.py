"""The Performance Benchmarker adapter end to end, against a real redis-server and a real node:
metrics snapshots on a period, a bounded benchmark on request (by count, by duration, one at a
time), requests out of bounds refused; and the histogram quantile estimate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from adapter_helpers import Nodes, eventually, peer, running
from conftest import RedisServer

from raft_manager.adapters.messages import BENCH_METRICS, BENCH_RUN, BenchResult, MetricsSnapshot
from raft_manager.adapters.metrics_snapshot import BOUNDS, quantile_us
from raft_manager.client import SwarmClient

BENCHMARKER = "performance-benchmarker"


def test_quantiles_are_estimated_within_the_bucket_they_fall_in() -> None:
    before = [0.0] * len(BOUNDS)
    # 10 observations in (0.001, 0.0025], 10 more in (0.0025, 0.005]; cumulative counts
    after = [0.0 if bound <= 0.001 else 10.0 if bound <= 0.0025 else 20.0 for bound in BOUNDS]
    assert quantile_us(0.5, before, after) == 2500  # the top of the first occupied bucket
    assert quantile_us(0.25, before, after) == 1750  # halfway through it
    assert quantile_us(0.99, before, after) == 4950
    assert quantile_us(0.5, after, after) is None  # nothing observed in the period
    beyond = [0.0] * (len(BOUNDS) - 1) + [3.0]  # all past the last bound: that bound
    assert quantile_us(0.99, before, beyond) == 1_000_000


async def test_every_node_publishes_its_metrics_on_a_period(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = Nodes(tmp_path, redis_server.url, peers=(BENCHMARKER,))
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, BENCHMARKER, BENCH_METRICS) as played,
        nodes.client() as client,
    ):
        swarm = SwarmClient(client)
        for n in range(50):
            await swarm.memory_put(f"k{n}", n)

        def busy() -> list[MetricsSnapshot]:
            return [s for s in played.payloads(BENCH_METRICS) if s.commit_latency.count >= 10]

        await eventually(busy, timeout=10)
        await eventually(lambda: len(played.received[BENCH_METRICS]) >= 3, timeout=10)
    snapshot = busy()[0]
    assert (snapshot.node, snapshot.role) == ("n1", "leader")
    assert snapshot.proposals_per_s > 0 and snapshot.commits_per_s > 0
    latency = snapshot.commit_latency
    assert latency.p50_us is not None and latency.p99_us is not None
    assert 0 < latency.p50_us <= latency.p99_us
    assert snapshot.fsync_latency.count > 0 and snapshot.fsync_latency.p50_us is not None
    snapshots = played.payloads(BENCH_METRICS)
    assert all(200 <= s.period_ms <= 2000 for s in snapshots)  # metrics_period_s = 0.3
    assert sum(s.elections for s in snapshots) <= snapshots[-1].term


async def test_a_benchmark_runs_within_its_bounds_one_at_a_time_and_bad_requests_run_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = Nodes(tmp_path, redis_server.url, peers=(BENCHMARKER,))
    async with running(nodes, "n1"), peer(redis_server.url, BENCHMARKER) as played:

        async def run(payload: dict[str, Any]) -> BenchResult:
            result = await played.ask(BENCH_RUN, payload)
            assert isinstance(result, BenchResult)
            return result

        counted = await run({"count": 300, "concurrency": 4, "duration_ms": 3000})
        assert (counted.ok, counted.node, counted.stopped_by) == (True, "n1", "count")
        assert (counted.completed, counted.failed) == (300, 0) and counted.per_s > 0
        assert counted.latency is not None and counted.latency.p50_us is not None
        assert counted.latency.p99_us is not None and counted.latency.max_us is not None
        assert 0 < counted.latency.p50_us <= counted.latency.p99_us <= counted.latency.max_us
        timed = await run({"count": 100_000, "concurrency": 8, "duration_ms": 400})
        assert (timed.ok, timed.stopped_by) == (True, "duration")
        assert 400 <= timed.elapsed_ms < 1000 and 0 < timed.completed < 100_000
        both: list[BenchResult] = []

        async def one() -> None:
            both.append(await run({"count": 100_000, "concurrency": 2, "duration_ms": 500}))

        async with anyio.create_task_group() as group:  # both land on n1's consumers
            group.start_soon(one)
            group.start_soon(one)
        assert sorted((r.ok, r.error) for r in both) == [(False, "busy"), (True, None)]
        refusals = {
            "too long": ({"duration_ms": 60_000}, "rejected", "at most 4000"),
            "no writes": ({"count": 0}, "bad-payload", "count"),
            "too many writers": ({"concurrency": 65}, "bad-payload", "concurrency"),
            "unknown field": ({"rate": 5}, "bad-payload", "rate"),
        }
        for name, (payload, code, says) in refusals.items():
            refused = await run(payload)
            assert (refused.ok, refused.error, refused.completed) == (False, code, 0), name
            assert refused.reason is not None and says in refused.reason, (name, refused.reason)
    print(
        f"benchmark: {counted.completed} writes, {counted.per_s}/s, "
        f"p50 {counted.latency.p50_us} us, p99 {counted.latency.p99_us} us; "
        f"{timed.completed} writes in {timed.elapsed_ms} ms at concurrency 8"
    )


async def test_a_snapshot_too_big_for_an_envelope_is_logged_and_the_adapters_go_on(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "raft_manager.adapters")
    sections = {"adapters": {"max_envelope_bytes": 300}}
    nodes = Nodes(tmp_path, redis_server.url, peers=(BENCHMARKER,), sections=sections)
    async with running(nodes, "n1"):
        await eventually(lambda: caplog.text.count("what=bench.metrics") >= 3, timeout=10)
    assert "max_envelope_bytes is 300" in caplog.text
    assert "event=adapters_stopped" not in caplog.text

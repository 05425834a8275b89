"""A node's metrics as Prometheus reads them: the lock-free histograms and counter of the hot path
come out under the names and buckets a Prometheus Histogram and Counter would give."""

from __future__ import annotations

from prometheus_client import generate_latest

from raft_manager.adapters.metrics_snapshot import BOUNDS, read
from raft_manager.server.metrics import LATENCY_BUCKETS, NodeMetrics
from raft_manager.transport.base import TransportStats

STATUS = {"term": 3, "commit_index": 9, "applied_index": 8, "last_index": 10, "role": "leader"}


def test_observations_land_in_the_bucket_whose_bound_is_the_first_at_or_above_them() -> None:
    metrics = NodeMetrics("n1")
    metrics.watch(lambda: STATUS, TransportStats())
    for seconds in (0.0001, 0.00010001, 0.0009, 0.001, 2.0):
        metrics.fsync_latency.observe(seconds)
    metrics.proposals += 7
    reading = read(metrics.registry, at=0.0)
    cumulative = dict(zip(BOUNDS, reading.fsync_buckets, strict=True))
    assert cumulative[0.0001] == 1  # a bound counts what is at most it (Prometheus's le)
    assert cumulative[0.00025] == 2
    assert cumulative[0.001] == 4
    assert cumulative[LATENCY_BUCKETS[-1]] == 4 and cumulative[float("inf")] == 5
    assert reading.commit_buckets[-1] == 0
    assert reading.proposals == 7 and reading.term == 3 and reading.role == "leader"
    text = generate_latest(metrics.registry).decode()
    assert 'raft_fsync_latency_seconds_bucket{le="+Inf"} 5.0' in text
    assert "raft_fsync_latency_seconds_count 5.0" in text
    assert "raft_fsync_latency_seconds_sum 2.00210001" in text
    assert "raft_proposals_total 7.0" in text

"""A node's metrics over a period, from its Prometheus registry: what the Performance
Benchmarker receives.

Theory of operation: `read` takes one pass over the node's registry (server/metrics.py) and
keeps the cumulative values: proposals accepted as leader, the commit-latency and fsync-latency
histograms' bucket counts, the term, the commit index, the role. A snapshot is the difference
between two readings: rates per second over the period, the number of terms begun (each
election, won or not, begins one), and latency quantiles of the observations made in the
period, estimated from the histogram buckets the way Prometheus's histogram_quantile does
(linear within the bucket the quantile falls in; an observation beyond the last bucket counts
as the last bucket's bound). Latencies are integer microseconds, rates integers per second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from raft_manager.server.metrics import LATENCY_BUCKETS

from .messages import Latency, MetricsSnapshot

BOUNDS = (*LATENCY_BUCKETS, math.inf)
COMMIT = "raft_commit_latency_seconds_bucket"
FSYNC = "raft_fsync_latency_seconds_bucket"


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # seconds, any monotonic clock
    proposals: float
    commit_buckets: tuple[float, ...]  # cumulative counts, one per bound of BOUNDS
    fsync_buckets: tuple[float, ...]
    term: int
    commit_index: int
    role: str


def read(registry: CollectorRegistry, at: float) -> Reading:
    values: dict[tuple[str, float], float] = {}  # (name, bucket bound or 0) -> value
    role = "unknown"
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "raft_role":
                if sample.value == 1:
                    role = sample.labels["role"]
                continue
            values[sample.name, float(sample.labels.get("le", 0))] = sample.value

    def buckets(name: str) -> tuple[float, ...]:
        return tuple(values.get((name, bound), 0.0) for bound in BOUNDS)

    return Reading(
        at=at,
        proposals=values.get(("raft_proposals_total", 0), 0.0),
        commit_buckets=buckets(COMMIT),
        fsync_buckets=buckets(FSYNC),
        term=int(values.get(("raft_term", 0), 0)),
        commit_index=int(values.get(("raft_commit_index", 0), 0)),
        role=role,
    )


def quantile_us(fraction: float, before: Sequence[float], after: Sequence[float]) -> int | None:
    """The `fraction` quantile of the observations between two bucket readings, in whole
    microseconds; None when there were none."""
    counts = [later - earlier for earlier, later in zip(before, after, strict=True)]
    total = counts[-1]
    if total <= 0:
        return None
    rank = fraction * total
    below = 0.0
    for at, cumulative in enumerate(counts):
        if cumulative >= rank:
            lower = BOUNDS[at - 1] if at > 0 else 0.0
            upper = BOUNDS[at]
            if math.isinf(upper):
                return round(lower * 1_000_000)
            inside = cumulative - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return round((lower + (upper - lower) * share) * 1_000_000)
        below = cumulative
    return None  # not reached: the last bucket holds every observation


def _latency(before: Sequence[float], after: Sequence[float]) -> Latency:
    return Latency(
        count=round(after[-1] - before[-1]),
        p50_us=quantile_us(0.5, before, after),
        p99_us=quantile_us(0.99, before, after),
    )


def snapshot(node_id: str, before: Reading, after: Reading) -> MetricsSnapshot:
    seconds = max(after.at - before.at, 1e-9)
    return MetricsSnapshot(
        node=node_id,
        role=after.role,
        term=after.term,
        commit_index=after.commit_index,
        period_ms=round(seconds * 1000),
        proposals_per_s=round((after.proposals - before.proposals) / seconds),
        commits_per_s=round(max(0, after.commit_index - before.commit_index) / seconds),
        elections=max(0, after.term - before.term),
        commit_latency=_latency(before.commit_buckets, after.commit_buckets),
        fsync_latency=_latency(before.fsync_buckets, after.fsync_buckets),
    )

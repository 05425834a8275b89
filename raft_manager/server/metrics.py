"""Prometheus metrics of one node, served over HTTP when the config names a metrics address.

Theory of operation: the hot path only observes two histograms (fsync and commit latency) and
bumps the proposal counter; everything else (term, role, indexes, bytes and frames in and out,
dropped frames by reason) is read from the runtime and the transport when Prometheus scrapes, by
a collector, so it costs nothing between scrapes. Each node has its own registry, so several
nodes (in tests) can live in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from raft_manager.transport.base import TransportStats, parse_address

ROLES = ("follower", "pre-candidate", "candidate", "leader")
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)


class NodeMetrics:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry()
        self.proposals = Counter(
            "raft_proposals", "Proposals accepted by this node as leader", registry=self.registry
        )
        self.commit_latency = Histogram(
            "raft_commit_latency_seconds",
            "From proposal to applied, on the leader (one sample per applied batch)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fsync_latency = Histogram(
            "raft_fsync_latency_seconds",
            "One Ready's write and fsync",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, status: Callable[[], dict[str, Any]], stats: TransportStats) -> None:
        """Report the runtime's status and the transport's counters at every scrape."""
        self.registry.register(_StateCollector(status, stats))

    def serve(self, address: str) -> None:
        host, port = parse_address(address)
        start_http_server(port, addr=host, registry=self.registry)


class _StateCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]], stats: TransportStats) -> None:
        self._status = status
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        status = self._status()
        for name, key, text in (
            ("raft_term", "term", "The current term"),
            ("raft_commit_index", "commit_index", "The commit index"),
            ("raft_applied_index", "applied_index", "The applied index"),
            ("raft_last_index", "last_index", "The last log index"),
        ):
            yield GaugeMetricFamily(name, text, value=status[key])
        role = GaugeMetricFamily("raft_role", "1 for the role this node is in", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if status["role"] == name else 0.0)
        yield role
        stats = self._stats
        for name, value, text in (
            ("raft_messages_sent", stats.sent, "Messages sent to peers"),
            ("raft_messages_received", stats.received, "Messages received from peers"),
            ("raft_bytes_out", stats.bytes_out, "Bytes sent to peers"),
            ("raft_bytes_in", stats.bytes_in, "Bytes received from peers"),
        ):
            yield CounterMetricFamily(name, text, value=value)
        dropped = CounterMetricFamily(
            "raft_frames_dropped", "Frames or messages dropped, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped

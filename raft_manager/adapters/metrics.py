"""The bus's Prometheus counters.

Theory of operation: one `BusMetrics` per bus, registered in the registry it is given (a node's
own registry, so the bus shows up on the node's metrics endpoint) or in a fresh one. Labels are
bounded: rejection and dead-letter reasons are fixed names, and message types are counted only
once a registered handler accepted them (what arrives on a reply stream, where anyone may
write any type, is counted under the type "reply").

    raft_bus_published_total               envelopes added to a stream
    raft_bus_handled_total{type}           handled and acknowledged
    raft_bus_handler_failures_total{type}  a handler raised or timed out (left for redelivery)
    raft_bus_duplicates_total              already handled: acknowledged without a second run
    raft_bus_rejected_total{reason}        refused at the gate (signing.py names the reasons)
    raft_bus_dead_lettered_total{reason}   moved to a dead-letter stream
    raft_bus_redis_errors_total            Redis calls that failed (each followed by a backoff)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BusMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.published = Counter(
            "raft_bus_published", "Envelopes added to a bus stream", registry=self.registry
        )
        self.handled = Counter(
            "raft_bus_handled",
            "Envelopes handled and acknowledged, by type",
            ["type"],
            registry=self.registry,
        )
        self.handler_failures = Counter(
            "raft_bus_handler_failures",
            "Handler runs that raised or timed out, by type",
            ["type"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "raft_bus_duplicates",
            "Envelopes already handled, acknowledged without running the handler again",
            registry=self.registry,
        )
        self.rejected = Counter(
            "raft_bus_rejected",
            "Envelopes refused by the security gate, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "raft_bus_dead_lettered",
            "Envelopes moved to a dead-letter stream, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "raft_bus_redis_errors", "Failed Redis calls of the bus", registry=self.registry
        )

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 if never touched), for tests and status output."""
        sample = self.registry.get_sample_value(f"raft_bus_{name}_total", labels or None)
        return sample or 0.0

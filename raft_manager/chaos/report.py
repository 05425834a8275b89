"""What a chaos run found: the numbers, the checks and the verdict.

Theory of operation: the report is computed after the run from what it left behind: the
recorded history (client/history.py), the checkers' verdicts on it (verify/history_check.py),
the checks made on the live cluster before it was stopped (convergence, the configuration
restored, the nodes' task tables, `verify` across the nodes, no node exiting on its own), the
faults injected and the leader timeline the watch saw. Times are seconds on the run's clock:
0 when the clients started, `duration` when they were told to stop.

- operations: counted by outcome (ok, fail, info) and by op; throughput is ok operations per
  second of the run.
- failovers: leaderships seen after the first (a new leader, or the same node elected again in
  a later term).
- longest unavailability: the longest stretch of the run in which no operation completed ok
  (from the start to the first, between two, from the last to the end).
- verdict: `non-linearizable` when a key's history is not linearizable, else `violation` when
  any other check failed, else `undecided` when a key's search passed its budget, else
  `linearizable`. Exit code 1 for the first two, 3 for undecided, 0 otherwise.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raft_manager.client.history import HistoryOp
from raft_manager.verify.checks import Check
from raft_manager.verify.history_check import HistoryReport

from .faults import FaultEvent
from .watch import Sample

NS = 1e9
BUCKET = 0.5  # seconds per throughput bucket


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the run was asked to do, and what it saw while it ran."""

    nodes: int
    duration: float
    clients: int
    kinds: tuple[str, ...]
    seed: int
    stale: bool
    origin_ns: int  # the run's clock zero on the history's clock
    events: tuple[FaultEvent, ...]
    timeline: tuple[Sample, ...]
    leaderships: tuple[tuple[str, int], ...]
    live_checks: tuple[Check, ...]


@dataclass(frozen=True, slots=True)
class ChaosReport:
    facts: RunFacts
    ops: Sequence[HistoryOp]
    history: HistoryReport
    history_path: str | None = None
    plot_path: str | None = None
    plot_note: str = ""

    @property
    def verdict(self) -> str:
        keys = {key.verdict for key in self.history.keys}
        if "violation" in keys:
            return "non-linearizable"
        if self.history.exit_code == 1 or not all(check.ok for check in self.facts.live_checks):
            return "violation"
        return "undecided" if "unknown" in keys else "linearizable"

    @property
    def exit_code(self) -> int:
        return {"linearizable": 0, "undecided": 3}.get(self.verdict, 1)

    def checks(self) -> list[Check]:
        return [*self.history.checks(), *self.facts.live_checks]

    def outcomes(self) -> dict[str, int]:
        counted = Counter(op.type for op in self.ops)
        return {kind: counted[kind] for kind in ("ok", "fail", "info")}

    def by_op(self) -> dict[str, dict[str, int]]:
        found: dict[str, Counter[str]] = {}
        for op in self.ops:
            found.setdefault(op.op, Counter())[op.type] += 1
        return {op: dict(sorted(counts.items())) for op, counts in sorted(found.items())}

    def faults(self) -> dict[str, int]:
        return dict(Counter(event.kind for event in self.facts.events))

    @property
    def failovers(self) -> int:
        return max(len(self.facts.leaderships) - 1, 0)

    def ok_times(self) -> list[float]:
        """When each ok operation completed, in order (seconds on the run's clock)."""
        origin = self.facts.origin_ns
        return sorted((op.complete - origin) / NS for op in self.ops if op.type == "ok")

    def longest_unavailability(self) -> tuple[float, float]:
        """(seconds, when it began): the longest stretch of the run without an ok completion."""
        end = self.facts.duration
        times = [t for t in self.ok_times() if 0.0 <= t <= end]
        edges = [0.0, *times, end]
        gap, at = max((b - a, a) for a, b in itertools.pairwise(edges))
        return gap, at

    def throughput(self) -> list[tuple[float, float]]:
        """(bucket start, ok operations per second in it) over the run."""
        buckets = int(self.facts.duration / BUCKET + 0.999)
        counts = [0] * buckets
        for t in self.ok_times():
            if 0.0 <= t < buckets * BUCKET:
                counts[int(t / BUCKET)] += 1
        return [(k * BUCKET, count / BUCKET) for k, count in enumerate(counts)]

    def as_dict(self) -> dict[str, Any]:
        facts = self.facts
        outcomes = self.outcomes()
        gap, at = self.longest_unavailability()
        in_run = [t for t in self.ok_times() if 0.0 <= t <= facts.duration]
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "nodes": facts.nodes,
            "duration": facts.duration,
            "clients": facts.clients,
            "fault_kinds": list(facts.kinds),
            "seed": facts.seed,
            "stale": facts.stale,
            "operations": {
                **outcomes,
                "total": sum(outcomes.values()),
                "ok_per_second": round(len(in_run) / facts.duration, 1),
                "by_op": self.by_op(),
            },
            "faults": self.faults(),
            "fault_log": [event.as_dict() for event in facts.events],
            "failovers": self.failovers,
            "leaders": [
                {"at": round(s.at, 3), "leader": s.leader, "term": s.term} for s in facts.timeline
            ],
            "longest_unavailability": {"seconds": round(gap, 3), "from": round(at, 3)},
            "checks": [check.as_dict() for check in self.checks()],
            "history": self.history_path,
            "plot": self.plot_path,
            "plot_note": self.plot_note,
        }

    def rows(self) -> list[tuple[str, str]]:
        """The summary for people, as (what, value) rows."""
        facts, data = self.facts, self.as_dict()
        operations = data["operations"]
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults().items()))
        gap = data["longest_unavailability"]
        run = (
            f"{facts.nodes} nodes, {facts.clients} clients, {facts.duration:g} s, seed {facts.seed}"
        )
        return [
            ("run", run + (", stale reads" if facts.stale else "")),
            (
                "operations",
                f"{operations['total']:,} ({operations['ok']:,} ok, {operations['fail']:,} "
                f"fail, {operations['info']:,} info)",
            ),
            ("throughput", f"{operations['ok_per_second']:,} ok operations/s"),
            ("faults", faults or "none"),
            ("failovers", str(self.failovers)),
            (
                "longest unavailability",
                f"{gap['seconds']:.2f} s (from {gap['from']:.2f} s)",
            ),
            ("verdict", self.verdict),
        ]

"""Run many seeded schedules, in parallel across processes, and sum up what they found.

Theory of operation: seeds are independent, so they are split into chunks and farmed out to a
process pool (one worker per core by default); each result comes back whole and is reported to an
optional callback as it arrives, which drives a progress bar. The summary is the same whatever the
number of workers: a seed's outcome depends on nothing but the seed and the options.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from .schedule import SeedResult, SimOptions, Violation, run_seed

CHUNK = 20


@dataclass(slots=True)
class SimSummary:
    seeds: int = 0
    violations: list[Violation] = field(default_factory=list)
    elections: int = 0
    commits: int = 0
    reads_served: int = 0
    crashes: int = 0
    ticks: int = 0
    node_steps: int = 0
    max_liveness_ticks: int = 0
    workload: dict[str, int] = field(default_factory=dict)  # the ledger workload's counts, summed
    seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        return self.node_steps / self.seconds if self.seconds else 0.0

    def add(self, result: SeedResult) -> None:
        self.seeds += 1
        self.elections += result.elections
        self.commits += result.commits
        self.reads_served += result.reads_served
        self.crashes += result.crashes
        self.ticks += result.ticks
        self.node_steps += result.node_steps
        self.max_liveness_ticks = max(self.max_liveness_ticks, result.liveness_ticks)
        for name, count in result.workload.items():
            self.workload[name] = self.workload.get(name, 0) + count
        if result.violation is not None:
            self.violations.append(result.violation)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["violations"] = sorted(data["violations"], key=lambda v: v["seed"])
        data["steps_per_second"] = round(self.steps_per_second, 1)
        data["seconds"] = round(self.seconds, 3)
        return data


def _run_chunk(seeds: Sequence[int], options: SimOptions) -> list[SeedResult]:
    return [run_seed(seed, options) for seed in seeds]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def run_seeds(
    seeds: Sequence[int],
    options: SimOptions,
    *,
    workers: int = 1,
    on_result: Callable[[SeedResult], None] | None = None,
) -> SimSummary:
    summary = SimSummary()
    started = time.perf_counter()

    def collect(results: list[SeedResult]) -> None:
        for result in results:
            summary.add(result)
            if on_result is not None:
                on_result(result)

    if workers <= 1 or len(seeds) <= CHUNK:
        for seed in seeds:
            collect([run_seed(seed, options)])
    else:
        chunks = [seeds[k : k + CHUNK] for k in range(0, len(seeds), CHUNK)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_run_chunk, chunk, options) for chunk in chunks]
            for future in as_completed(futures):
                collect(future.result())
    summary.seconds = time.perf_counter() - started
    return summary

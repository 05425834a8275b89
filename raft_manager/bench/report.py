"""What a bench run found, as JSON, as a rich table with ratios, and as a docs section.

Theory of operation: each measured system reduces to six figures (`figures`): throughput
(writes/s with the plan's writes in flight), sequential p50 and p99 (ms), p99 at the offered
load (ms), the median time from a leader's SIGKILL to the next committed write (s), and whether
it fsyncs. A ratio compares raft-manager with a peer so that above 1 means raft-manager is
better: its throughput over the peer's, the peer's latencies and failover time over its own.
The notes say how each system was set up, which do not fsync, which were skipped or failed and
why, how many writes of each workload were not committed in time (a figure that falls among
them is shown as unknown, "-"), and how loaded the machine was when the run began.
`write_docs` replaces the generated section of a Markdown file (between BEGIN and END) and
leaves the rest of the file alone.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from rich.table import Table

from .raft_manager_system import NAME as RAFT_MANAGER
from .runner import BenchReport, SystemResult
from .system import VALUE_BYTES, WRITE_TIMEOUT
from .workloads import Samples

Figures = dict[str, float | bool | None]
BEGIN = "<!-- raft-manager bench: generated section, begin -->"
END = "<!-- raft-manager bench: generated section, end -->"
# figure key, label, unit, higher is better
METRICS = (
    ("throughput", "throughput, {in_flight:,} in flight", "writes/s", True),
    ("p50_ms", "sequential write p50", "ms", False),
    ("p99_ms", "sequential write p99", "ms", False),
    ("p99_at_load_ms", "p99 at {rate:,.0f} writes/s offered", "ms", False),
    ("failover_s", "leader SIGKILL to a committed write, median of {trials}", "s", False),
)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def figures(result: SystemResult) -> Figures:
    return {
        "throughput": _rounded(result.throughput.rate, 1),
        "p50_ms": _rounded(result.sequential.percentile_ms(0.5), 3),
        "p99_ms": _rounded(result.sequential.percentile_ms(0.99), 3),
        "p99_at_load_ms": _rounded(result.at_load.percentile_ms(0.99), 3),
        "failover_s": _rounded(result.failover.median, 3),
        "fsync": result.fsync,
    }


def to_json(report: BenchReport) -> dict[str, dict[str, Figures]]:
    return {"systems": {result.name: figures(result) for result in report.results}}


def ratios(report: BenchReport) -> dict[str, dict[str, float | None]]:
    """peer -> metric -> raft-manager's advantage (above 1: raft-manager is better)."""
    systems = to_json(report)["systems"]
    ours = systems.get(RAFT_MANAGER)
    found: dict[str, dict[str, float | None]] = {}
    for peer, theirs in systems.items():
        if peer == RAFT_MANAGER or ours is None:
            continue
        found[peer] = {}
        for key, _, _, higher_better in METRICS:
            mine, other = ours[key], theirs[key]
            if not isinstance(mine, float) or not isinstance(other, float) or not mine * other:
                found[peer][key] = None
            else:
                found[peer][key] = mine / other if higher_better else other / mine
    return found


def notes(report: BenchReport) -> list[str]:
    lines = [f"{result.name}: {result.setup}" for result in report.results]
    lines += [
        f"{result.name} does not fsync: an acknowledged write is in memory only"
        for result in report.results
        if not result.fsync
    ]
    lines += [f"{name}: {why}" for name, why in report.skipped.items()]
    lines += [f"{name}: failed: {why}" for name, why in report.failed.items()]
    for result in report.results:
        lines += [
            f"{result.name}: {samples.failed:,} of {samples.failed + samples.completed:,} "
            f"writes {what} were not committed within {WRITE_TIMEOUT:g} s"
            for what, samples in _workloads(result, report)
            if samples.failed
        ]
    lines.append(_machine(report))
    return lines


def _workloads(result: SystemResult, report: BenchReport) -> list[tuple[str, Samples]]:
    plan = report.plan
    return [
        ("one at a time", result.sequential),
        (f"with {plan.in_flight:,} in flight", result.throughput),
        (f"at {plan.rate:,.0f}/s offered", result.at_load),
        ("right after a leader kill", result.failover),
    ]


def _machine(report: BenchReport) -> str:
    plan = report.plan
    load = "/".join(f"{value:.2f}" for value in report.load)
    return (
        f"{plan.nodes} nodes per system on loopback, {os.cpu_count()} cores "
        f"({platform.system()} {platform.machine()}), load average {load} (1/5/15 min) when "
        f"the run began; {plan.seconds:g} s per workload, {VALUE_BYTES}-byte writes; one "
        "client process for all systems, its garbage collector tuned as raft-manager's nodes "
        "tune theirs (server/collector.py)"
    )


def _label(template: str, report: BenchReport) -> str:
    plan = report.plan
    return template.format(in_flight=plan.in_flight, rate=plan.rate, trials=plan.trials)


def _cell(value: float | bool | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "writes/s":
        return f"{value:,.0f}"
    return f"{value:.3f}" if unit == "s" else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """The header and rows shared by the table and the docs section."""
    systems = to_json(report)["systems"]
    compared = ratios(report)
    header = ["", *systems]
    header += [f"raft-manager vs {peer}" for peer in compared]
    rows = []
    for key, template, unit, _ in METRICS:
        row = [f"{_label(template, report)} ({unit})"]
        row += [_cell(values[key], unit) for values in systems.values()]
        row += [_ratio(compared[peer][key]) for peer in compared]
        rows.append(row)
    fsync_row = ["fsync before acknowledging"]
    fsync_row += ["yes" if values["fsync"] else "no" for values in systems.values()]
    rows.append(fsync_row + [""] * len(compared))
    return header, rows


def table(report: BenchReport) -> Table:
    header, rows = _rows(report)
    view = Table(title="raft-manager bench (ratios above 1: raft-manager is better)")
    view.add_column(header[0])
    for column in header[1:]:
        view.add_column(column, justify="right")
    for row in rows:
        view.add_row(*row)
    return view


def markdown(report: BenchReport, plot_link: str | None) -> str:
    header, rows = _rows(report)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.started))
    lines = [
        BEGIN,
        "",
        f"### `raft-manager bench` ({when}, transport {report.plan.transport})",
        "",
        "Written by `raft-manager bench --write-docs`; ratios above 1 mean raft-manager is better.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(f"- {line}" for line in notes(report)),
    ]
    if plot_link is not None:
        lines += ["", f"![latency CDFs]({plot_link})"]
    return "\n".join([*lines, "", END]) + "\n"


def write_docs(path: Path, section: str) -> None:
    """Put `section` between BEGIN and END in `path` (appended when it has none yet)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + section.rstrip("\n") + after
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section
    path.write_text(text)

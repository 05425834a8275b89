"""A picture of a chaos run: throughput and the leader over time, with the faults marked.

Theory of operation: matplotlib is optional (not a dependency): it is imported only when a
plot is asked for, with the non-interactive Agg backend, and when it is missing the plot is
skipped and the reason returned. Two panels share the time axis (seconds of the run): ok
operations per second in half-second buckets, and the leader the watch saw (one row per node;
a gap where no leader answered). Every fault is a shaded span over both panels, one colour per
kind, labelled with its targets.
"""

from __future__ import annotations

from pathlib import Path

from ..bench.plot import import_pyplot
from .report import ChaosReport

COLOURS = {"kill": "tab:red", "pause": "tab:orange", "partition": "tab:purple"}
MEMBERSHIP_COLOUR = "tab:green"


def write_plot(report: ChaosReport, path: Path) -> str | None:
    """Write the PNG; None when written, else why not."""
    pyplot = import_pyplot()
    if pyplot is None:
        return "matplotlib is not installed: no plot"
    facts = report.facts
    figure, (rate, leaders) = pyplot.subplots(2, 1, sharex=True, figsize=(10, 5.5))
    series = report.throughput()
    series.append((facts.duration, series[-1][1] if series else 0.0))  # the last bucket's end
    rate.step([t for t, _ in series], [r for _, r in series], where="post", color="tab:blue")
    rate.set_ylabel("ok operations/s")
    rate.set_title(
        f"chaos: {facts.nodes} nodes, {facts.clients} clients, seed {facts.seed}, "
        f"verdict {report.verdict}"
    )
    nodes = sorted({s.leader for s in facts.timeline if s.leader is not None})
    row = {node: k for k, node in enumerate(nodes)}
    ends = [s.at for s in facts.timeline[1:]] + [facts.duration]
    for sample, end in zip(facts.timeline, ends, strict=True):
        if sample.leader is not None:
            leaders.hlines(row[sample.leader], sample.at, end, linewidth=6, color="tab:blue")
    leaders.set_yticks(range(len(nodes)), nodes)
    leaders.set_ylim(-0.5, max(len(nodes), 1) - 0.5)
    leaders.set_ylabel("leader")
    leaders.set_xlabel("seconds")
    leaders.set_xlim(0, facts.duration)
    labelled: set[str] = set()
    for event in facts.events:
        colour = COLOURS.get(event.kind, MEMBERSHIP_COLOUR)
        label = None if event.kind in labelled else event.kind
        labelled.add(event.kind)
        for axes in (rate, leaders):
            axes.axvspan(event.start, event.end, color=colour, alpha=0.18, label=label)
            label = None
        rate.annotate(
            ",".join(event.targets),
            (event.start, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            va="top",
        )
    if labelled:
        rate.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None

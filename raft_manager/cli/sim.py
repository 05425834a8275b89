"""`raft-manager sim`: run seeded fault schedules through the deterministic simulator.

Exit codes: 0 no violation, 1 at least one violation (each printed with its seed, invariant and a
trace tail), 2 bad arguments.
"""

from __future__ import annotations

import json
import sys
import tempfile

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from raft_manager.sim.runner import SimSummary, default_workers, run_seeds
from raft_manager.sim.schedule import SeedResult, SimOptions
from raft_manager.storage.scratch import ScratchDisks


def sim_command(
    seeds: int = typer.Option(200, "--seeds", min=1, help="How many seeded schedules to run."),
    nodes: int | None = typer.Option(
        None, "--nodes", min=1, max=7, help="Cluster size (default: 3 or 5, chosen per seed)."
    ),
    steps: int = typer.Option(300, "--steps", min=1, help="Ticks of chaos per schedule."),
    seed_start: int = typer.Option(0, "--seed-start", min=0, help="The first seed."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Replay exactly this one seed."),
    workers: int = typer.Option(
        0, "--workers", min=0, help="Processes to use (0: one per core, at most 8)."
    ),
    disk_every: int = typer.Option(
        10,
        "--disk-every",
        min=0,
        help="Every Nth seed also writes real WAL files (in a temporary directory) and checks "
        "that each restart recovers exactly what was persisted (0: never).",
    ),
    membership: bool = typer.Option(
        False,
        "--membership",
        help="Two spare nodes, and random membership changes (add learner, promote, remove, "
        "the leader included) through the leader, mixed with every fault.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run N seeded schedules with every fault on and check the Raft invariants after each step."""
    with tempfile.TemporaryDirectory(prefix="raft-manager-sim-") as scratch:
        options = SimOptions(
            nodes=nodes,
            steps=steps,
            disks=ScratchDisks(scratch),
            disk_every=disk_every,
            membership=membership,
        )
        summary, results = _run(options, seed, seeds, seed_start, workers, as_json)
    if as_json:
        payload = summary.to_json()
        if seed is not None:
            payload["result"] = results[0].to_json()
        typer.echo(json.dumps(payload, sort_keys=True))
    else:
        replay = "raft-manager sim" + (f" --nodes {nodes}" if nodes else "")
        replay += f" --steps {steps}" if steps != SimOptions().steps else ""
        replay += " --membership" if membership else ""
        _print_report(Console(), summary, results[0] if seed is not None else None, replay)
    raise typer.Exit(1 if summary.violations else 0)


def _run(
    options: SimOptions,
    seed: int | None,
    seeds: int,
    seed_start: int,
    workers: int,
    as_json: bool,
) -> tuple[SimSummary, list[SeedResult]]:
    seed_list = [seed] if seed is not None else list(range(seed_start, seed_start + seeds))
    console = Console(stderr=as_json)
    results: list[SeedResult] = []
    show_bar = sys.stdout.isatty() and not as_json and len(seed_list) > 1
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show_bar,
        transient=True,
    ) as progress:
        task = progress.add_task("simulating", total=len(seed_list))

        def on_result(result: SeedResult) -> None:
            results.append(result)
            progress.advance(task)

        summary = run_seeds(
            seed_list, options, workers=workers or default_workers(), on_result=on_result
        )
    return summary, results


def _print_report(
    console: Console, summary: SimSummary, replayed: SeedResult | None, replay: str
) -> None:
    table = Table(title="raft-manager simulation", show_header=False)
    table.add_row("seeds run", str(summary.seeds))
    table.add_row("violations", str(len(summary.violations)))
    table.add_row("elections", str(summary.elections))
    table.add_row("commits", str(summary.commits))
    table.add_row("reads served", str(summary.reads_served))
    table.add_row("crashes", str(summary.crashes))
    table.add_row("node steps", str(summary.node_steps))
    table.add_row("steps per second", f"{summary.steps_per_second:,.0f}")
    table.add_row("slowest recovery (ticks)", str(summary.max_liveness_ticks))
    table.add_row("wall time (s)", f"{summary.seconds:.2f}")
    console.print(table)
    if replayed is not None:
        console.print(f"seed {replayed.seed}: {replayed.nodes} nodes, config {replayed.config}")
    for violation in sorted(summary.violations, key=lambda v: v.seed):
        console.print(
            f"[bold red]VIOLATION[/] seed {violation.seed}: {violation.invariant}: "
            f"{violation.detail}"
        )
        console.print(f"  replay: {replay} --seed {violation.seed}", markup=False)
        for line in violation.trace[-15:]:
            console.print(f"    {line}", markup=False, highlight=False)

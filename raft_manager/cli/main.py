"""The `raft-manager` command: one typer app; each command lives in its own module.

Exit codes shared by every command: 0 success, 1 the command ran and found a problem (a violation,
an unhealthy cluster), 2 bad usage or input (typer's own usage errors also exit 2). The ledger
commands (task, agent, memory, decision) add 3 "nothing" (no task to claim, no such key) and 4
the cluster did not answer in time; for them 1 means the ledger refused (see cli/ledger.py).
"""

from __future__ import annotations

import typer

from raft_manager import __version__

from .agent import agent_app
from .bench import bench_command
from .bus import bus_app
from .chaos import chaos_command
from .check_history import check_history_command
from .cluster import cluster_app, elect_command, health_command, status_command
from .decision import decision_app
from .demo import demo_command
from .hooks import hooks_app
from .mcp import mcp_command
from .members import members_app
from .memory import memory_app
from .node import node_command
from .sim import sim_command
from .skill import skill_app
from .task import task_app
from .verify import verify_command
from .wal import wal_app

app = typer.Typer(
    name="raft-manager",
    help="A Raft consensus coordinator for AI-agent swarms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """A Raft consensus coordinator for AI-agent swarms."""


app.command("demo")(demo_command)
app.command("node")(node_command)
app.add_typer(cluster_app, name="cluster")
app.command("status")(status_command)
app.command("health")(health_command)
app.command("elect")(elect_command)
app.command("sim")(sim_command)
app.command("bench")(bench_command)
app.add_typer(wal_app, name="wal")
app.add_typer(task_app, name="task")
app.add_typer(agent_app, name="agent")
app.add_typer(memory_app, name="memory")
app.add_typer(decision_app, name="decision")
app.add_typer(members_app, name="members")
app.command("mcp")(mcp_command)
app.command("verify")(verify_command)
app.command("check-history")(check_history_command)
app.command("chaos")(chaos_command)
app.add_typer(hooks_app, name="hooks")
app.add_typer(skill_app, name="skill")
app.add_typer(bus_app, name="bus")

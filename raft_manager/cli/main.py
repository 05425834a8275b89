"""The `raft-manager` command: one typer app; each command lives in its own module.

Exit codes shared by every command: 0 success, 1 the command ran and found a problem (a violation,
an unhealthy cluster), 2 bad usage or input (typer's own usage errors also exit 2).
"""

from __future__ import annotations

import typer

from raft_manager import __version__

from .cluster import cluster_app, elect_command, health_command, status_command
from .node import node_command
from .sim import sim_command
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


app.command("node")(node_command)
app.add_typer(cluster_app, name="cluster")
app.command("status")(status_command)
app.command("health")(health_command)
app.command("elect")(elect_command)
app.command("sim")(sim_command)
app.add_typer(wal_app, name="wal")

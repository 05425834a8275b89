"""`raft-manager mcp`: serve the cluster's operations as MCP tools over stdio.

Theory of operation: the cluster is found like every other command finds it (--cluster FILE or
HOST:PORT,HOST:PORT, else $RAFT_MANAGER_CLUSTER, else ./.raft-manager/cluster.toml); a bad
cluster file is exit 2 before the protocol starts. Then raft_manager/mcp_server serves MCP on
stdin/stdout until the MCP client closes stdin (exit 0). Logs go to stderr (with --json, as JSON
lines: cli/logs.py): stdout carries nothing but the protocol. The tools and their arguments
are in docs/mcp.md.
"""

from __future__ import annotations

import sys

import anyio
import typer

from .cluster import resolve_cluster
from .ledger import ClusterOption, TimeoutOption
from .logs import LogLevel, setup_logging


def mcp_command(
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: bool = typer.Option(False, "--json", help="Log to stderr as JSON lines."),
) -> None:
    """Serve the cluster as MCP tools over stdio (for Claude Code and other MCP clients)."""
    from raft_manager.mcp_server import serve  # here: the mcp package costs every command 0.6 s

    members = resolve_cluster(cluster)
    setup_logging(LogLevel.WARNING, sys.stderr, as_json=as_json)
    try:
        anyio.run(serve, members, timeout)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None

"""Local clusters and cluster inspection: `cluster up|down`, `status`, `health`, `elect`.

`cluster up --nodes N --dir DIR [--transport tcp|redis --redis-url URL]` writes
DIR/cluster.toml (or reuses the one there, so the nodes restart on their existing data), starts
one `raft-manager node` process per node in the background (logs in DIR/<id>.log, pids in
DIR/pids.json), waits for a leader and prints each node's id, pid, address and data dir.
`cluster down --dir DIR` stops them (SIGTERM, then SIGKILL after 5 s). The other commands find
the cluster with --cluster PATH (or --cluster HOST:PORT,HOST:PORT: the nodes' client addresses),
else $RAFT_MANAGER_CLUSTER, else ./.raft-manager/cluster.toml.

Exit codes: up 0 a leader was elected, 1 none within the timeout, 2 bad arguments or ports in
use; down 0 (2 when DIR/pids.json is damaged); status 0 (1 when no node answers); health 0
healthy (a leader, every node answers), 1 degraded (a quorum answers), 2 no quorum; elect 0
leadership moved, 1 it did not.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import typer
from rich.console import Console
from rich.table import Table

from raft_manager.client import ClientError, RaftClient
from raft_manager.client.cluster_view import (
    Members,
    health_of,
    leader_of,
    status_report,
    statuses,
)
from raft_manager.server.config import ClusterConfig, ConfigError, load_config
from raft_manager.server.local_cluster import node_argv, write_config
from raft_manager.server.node import check_bindable
from raft_manager.server.pid_file import PidFile, PidFileError
from raft_manager.server.processes import spawn, stop_nodes
from raft_manager.transport.base import parse_address

cluster_app = typer.Typer(help="Start and stop a local cluster.", no_args_is_help=True)
DEFAULT_CLUSTER = Path(".raft-manager") / "cluster.toml"


def _cluster_path(option: Path | None) -> Path:
    if option is not None:
        return option
    from_env = os.environ.get("RAFT_MANAGER_CLUSTER")
    return Path(from_env) if from_env else DEFAULT_CLUSTER


def load_cluster_file(path: Path) -> ClusterConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def resolve_cluster(option: str | None) -> Members:
    """The nodes named by --cluster (a file, or addresses), $RAFT_MANAGER_CLUSTER or the
    default file; exit 2 when that names no node."""
    if option and not option.endswith(".toml") and not Path(option).exists():
        addresses = [address.strip() for address in option.split(",") if address.strip()]
        try:
            for address in addresses:
                parse_address(address)
        except ValueError as error:
            typer.echo(f"error: --cluster: {error}", err=True)
            raise typer.Exit(2) from None
        source, members = "--cluster", Members({address: address for address in addresses}, {})
    else:
        path = _cluster_path(Path(option) if option else None)
        source, members = str(path), _config_members(load_cluster_file(path))
    if not members.clients:
        typer.echo(f"error: {source} names no node (or every one was removed)", err=True)
        raise typer.Exit(2)
    return members


def _config_members(config: ClusterConfig) -> Members:
    """The nodes of the file that were not removed."""
    nodes = {node: spec for node, spec in config.nodes.items() if not spec.removed}
    return Members(
        {node: spec.client_address for node, spec in nodes.items()},
        {node: spec.address for node, spec in nodes.items()},
    )


@cluster_app.command("up")
def up_command(
    nodes: int = typer.Option(3, "--nodes", min=1, max=9, help="How many nodes."),
    directory: Path = typer.Option(DEFAULT_CLUSTER.parent, "--dir", help="The cluster's folder."),
    base_port: int = typer.Option(7101, "--base-port", min=1024, max=60000),
    transport: str = typer.Option("tcp", "--transport", help="tcp, or redis (streams)."),
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", "--redis-url", help="The Redis for --transport redis."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for a leader."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Start a local cluster in the background (or restart it on its data); wait for a leader."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file there, no permission, ...
        typer.echo(f"error: --dir {directory}: {error.strerror or error}", err=True)
        raise typer.Exit(2) from None
    path = directory / "cluster.toml"
    if transport not in ("tcp", "redis"):
        typer.echo(f"error: --transport must be tcp or redis, not {transport!r}", err=True)
        raise typer.Exit(2)
    if not path.exists():
        write_config(directory, nodes, base_port, transport, redis_url)
    config = load_cluster_file(path)
    pids: dict[str, int] = {}
    live = {node_id: spec for node_id, spec in config.nodes.items() if not spec.removed}
    for node_id, spec in live.items():
        try:
            if config.transport == "tcp":
                check_bindable(spec.address)
            check_bindable(spec.client_address)
        except ConfigError as error:
            typer.echo(f"error: {node_id}: {error} (is the cluster already up?)", err=True)
            raise typer.Exit(2) from None
    for node_id in live:
        pids[node_id] = start_node(directory, path, node_id)
    PidFile(directory).write(pids)
    deadline = time.monotonic() + timeout
    leader: str | None = None
    while leader is None and time.monotonic() < deadline:
        time.sleep(0.1)
        leader = leader_of(anyio.run(statuses, _config_members(config)))[0]
    rows = [
        {
            "id": node_id,
            "pid": pids[node_id],
            "address": spec.address,
            "client_address": spec.client_address,
            "data_dir": str(spec.data_dir),
        }
        for node_id, spec in live.items()
    ]
    if as_json:
        typer.echo(json.dumps({"leader": leader, "cluster": str(path), "nodes": rows}))
    else:
        table = Table(title=f"cluster {path} (leader: {leader or 'none yet'})")
        for column in ("id", "pid", "address", "client_address", "data_dir"):
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(row[column]) for column in row))
        Console().print(table)
    raise typer.Exit(0 if leader else 1)


def start_node(directory: Path, config: Path, node_id: str) -> int:
    """Start one `raft-manager node` process in the background (log in DIR/<id>.log)."""
    return spawn(directory, node_id, node_argv(config, node_id)).pid


@cluster_app.command("down")
def down_command(
    directory: Path = typer.Option(DEFAULT_CLUSTER.parent, "--dir", help="The cluster's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Stop a local cluster's node processes (a recorded pid that no longer runs its node's
    process, after a crash or a reboot, is left alone).

    JSON: {"stopped": [{"id", "pid"}], "stale": [{"id", "pid"}]} (both empty when none was
    recorded). Exit codes: 0 stopped, or nothing to stop; 2 the folder's pid file is unreadable.
    """
    pid_file = PidFile(directory)
    pids: dict[str, int] = {}
    stale: list[str] = []
    if pid_file.exists():
        try:
            pids = pid_file.read()
        except PidFileError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        stale = stop_nodes(pids, directory / "cluster.toml")
        pid_file.delete()
    if as_json:
        rows: dict[str, list[dict[str, object]]] = {"stopped": [], "stale": []}
        for node, pid in pids.items():
            rows["stale" if node in stale else "stopped"].append({"id": node, "pid": pid})
        typer.echo(json.dumps(rows))
        return
    if not pids:
        typer.echo(f"no running cluster recorded in {directory}")
    for node, pid in pids.items():
        if node in stale:
            typer.echo(f"{node}: pid {pid} no longer runs its node process; left alone")
        else:
            typer.echo(f"stopped {node} (pid {pid})")


CLUSTER_HELP = "The cluster's TOML file, or its nodes' client addresses: HOST:PORT,HOST:PORT."


def status_command(
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The leader and term, and every node's role, term, indexes, pid and reachability."""
    members = resolve_cluster(cluster)
    answers = anyio.run(statuses, members)
    report = status_report(members, answers)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        nodes = report["nodes"]
        table = Table(title=f"leader {report['leader'] or 'unknown'}, term {report['term']}")
        for column in nodes[0]:
            table.add_column(column)
        for node in nodes:
            table.add_row(*("-" if value is None else str(value) for value in node.values()))
        Console().print(table)
    raise typer.Exit(0 if answers else 1)


def health_command(
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Exit 0 healthy, 1 degraded (a quorum answers), 2 no quorum; prints one line why.

    JSON: {"state": "healthy" | "degraded" | "no_quorum", "reason", "leader", "term",
    "answering", "total", "down": [node ids]}; the same exit codes.
    """
    members = resolve_cluster(cluster)
    health = health_of(members, anyio.run(statuses, members))
    typer.echo(json.dumps(health.as_dict()) if as_json else health.reason)
    raise typer.Exit(health.exit_code)


def elect_command(
    to: str | None = typer.Option(None, "--to", help="The new leader (default: most up to date)."),
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Transfer leadership and wait for the result."""
    addresses = list(resolve_cluster(cluster).clients.values())

    async def transfer() -> dict[str, Any] | str:
        """The result, or why leadership did not move (refused, or no answer in time)."""
        async with RaftClient(addresses, timeout=5.0) as client:
            try:
                return await client.transfer(to)
            except (ClientError, TimeoutError) as error:
                return str(error)

    result = anyio.run(transfer)
    if isinstance(result, str):
        typer.echo(f"leadership did not move: {result}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"leader {result['old']} -> {result['new']}, term {result['term']}")

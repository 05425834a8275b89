"""Membership: `members list|add|promote|remove` for any cluster, `cluster add|remove` for a
local one.

Theory of operation: each change is one membership change made by the leader (a learner or a
voter added, a learner promoted, a member removed) and acknowledged once committed. A promotion
is refused while the learner lags; `--wait` retries it until the learner has caught up or the
wait runs out. `cluster add --dir DIR` names a new node (the next free nK), appends it to
DIR/cluster.toml with `join = true` and free loopback ports, starts its process, adds it as a
learner, waits for it to catch up and promotes it. `cluster remove ID --dir DIR` removes the
member, stops its process and marks it `removed = true` in the file (kept there, so every node
still computes the same initial configuration). Exit codes as for the ledger commands: 0 done,
1 refused (the reason is printed), 2 bad usage, 4 the cluster did not answer.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import typer

from raft_manager.client import SwarmClient
from raft_manager.client.cluster_view import change_members
from raft_manager.server.pid_file import PidFile
from raft_manager.server.processes import stop_nodes
from raft_manager.transport.base import parse_address

from .cluster import (
    DEFAULT_CLUSTER,
    cluster_app,
    load_cluster_file,
    start_node,
)
from .ledger import BAD_USAGE, REFUSED, ClusterOption, JsonOption, TimeoutOption, call, show, table

members_app = typer.Typer(help="List and change the cluster's members.", no_args_is_help=True)
MEMBER_FIELDS = ("id", "address", "role")


def _listing(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{field: member[field] for field in MEMBER_FIELDS} for member in result["members"]]


def _show(as_json: bool, result: dict[str, Any], title: str) -> None:
    members = _listing(result)
    show(as_json, {"members": members}, table(title, members, MEMBER_FIELDS))


async def _change(swarm: SwarmClient, body: dict[str, Any], wait: float) -> dict[str, Any]:
    """Make one change; while it is refused because the learner lags, retry until `wait`."""
    return await change_members(swarm.client, body, wait)


def _addresses(address: str, client_address: str) -> None:
    for value in (address, client_address):
        try:
            parse_address(value)
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(BAD_USAGE) from None


@members_app.command("list")
def list_command(
    cluster: ClusterOption = None, timeout: TimeoutOption = 5.0, as_json: JsonOption = False
) -> None:
    """The members as the leader sees them. --json: {"members": [{"id", "address", "role"}]},
    role voter or learner."""
    _show(as_json, call(cluster, timeout, lambda swarm: swarm.client.members()), "members")


@members_app.command("add")
def add_command(
    node: str = typer.Argument(..., help="The new member's id."),
    address: str = typer.Argument(..., help="Its Raft address, HOST:PORT."),
    client_address: str = typer.Option(..., "--client-address", help="Its client address."),
    learner: bool = typer.Option(False, "--learner", help="Add it as a learner (no vote)."),
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Add a member (start its node with `join = true` in its cluster file first)."""
    _addresses(address, client_address)
    body = {
        "kind": "add_learner" if learner else "add_voter",
        "node": node,
        "address": address,
        "client_address": client_address,
    }
    _show(as_json, call(cluster, timeout, lambda swarm: _change(swarm, body, 0)), "members")


@members_app.command("promote")
def promote_command(
    node: str = typer.Argument(..., help="The learner to make a voter."),
    wait: float = typer.Option(30.0, "--wait", min=0, help="Seconds to let it catch up."),
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Make a learner a voter, once it has caught up with the leader."""
    body = {"kind": "promote", "node": node}
    _show(as_json, call(cluster, timeout, lambda swarm: _change(swarm, body, wait)), "members")


@members_app.command("remove")
def remove_command(
    node: str = typer.Argument(..., help="The member to remove (the leader may remove itself)."),
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Remove a member."""
    body = {"kind": "remove", "node": node}
    _show(as_json, call(cluster, timeout, lambda swarm: _change(swarm, body, 0)), "members")


# -- a local cluster ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@cluster_app.command("add")
def cluster_add_command(
    directory: Path = typer.Option(DEFAULT_CLUSTER.parent, "--dir", help="The cluster's folder."),
    wait: float = typer.Option(30.0, "--wait", min=0, help="Seconds to let it catch up."),
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Start a new node for a local cluster, add it as a learner, catch it up, promote it."""
    path = directory / "cluster.toml"
    config = load_cluster_file(path)
    node = next(f"n{k}" for k in range(1, 1000) if f"n{k}" not in config.nodes)
    address, client_address = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    with path.open("a") as file:
        file.write(
            f'[nodes.{node}]\naddress = "{address}"\nclient_address = "{client_address}"\n'
            f'data_dir = "data/{node}"\njoin = true\n'
        )
    pid = start_node(directory, path, node)
    PidFile(directory).add(node, pid)
    cluster = str(path)
    learner = {"kind": "add_learner", "node": node, "address": address}
    learner["client_address"] = client_address
    call(cluster, timeout, lambda swarm: _change(swarm, learner, 0))
    promote = {"kind": "promote", "node": node}
    result = call(cluster, timeout, lambda swarm: _change(swarm, promote, wait))
    _show(as_json, result, f"{node} joined (pid {pid})")


@cluster_app.command("remove")
def cluster_remove_command(
    node: str = typer.Argument(..., help="The member to remove."),
    directory: Path = typer.Option(DEFAULT_CLUSTER.parent, "--dir", help="The cluster's folder."),
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Remove a member of a local cluster, then stop its process."""
    path = directory / "cluster.toml"
    config = load_cluster_file(path)
    if node not in config.nodes or config.nodes[node].removed:
        typer.echo(f"error: {node} is not a node of {path}", err=True)
        raise typer.Exit(REFUSED)
    if _marked_removed(path.read_text(), node) is None:
        # looked for first: the change must not be made if the file cannot say so
        typer.echo(
            f"error: no [nodes.{node}] line in {path} to mark removed; nothing changed", err=True
        )
        raise typer.Exit(REFUSED)
    body = {"kind": "remove", "node": node}
    result = call(str(path), timeout, lambda swarm: _change(swarm, body, 0))
    marked = _marked_removed(path.read_text(), node)  # read again: it may have changed since
    if marked is None:
        typer.echo(f"error: {node} was removed, but {path} lost its table: mark it", err=True)
        raise typer.Exit(REFUSED)
    path.write_text(marked)
    pid = PidFile(directory).pop(node)
    if pid is not None:
        stop_nodes({node: pid}, path)
    _show(as_json, result, f"{node} removed")


def _marked_removed(text: str, node: str) -> str | None:
    """The cluster file's text with `removed = true` in `node`'s table (the header written
    with spaces, quotes or a comment; an existing `removed` line replaced), or None when the
    file has no such table."""
    lines = text.splitlines()
    header = re.compile(rf"\s*\[\s*nodes\s*\.\s*([\"']?){re.escape(node)}\1\s*\]\s*(#.*)?")
    at = next((k for k, line in enumerate(lines) if header.fullmatch(line)), None)
    if at is None:
        return None
    end = next((k for k in range(at + 1, len(lines)) if lines[k].lstrip().startswith("[")), None)
    table = range(at + 1, len(lines) if end is None else end)
    existing = next((k for k in table if re.match(r"\s*removed\s*=", lines[k])), None)
    if existing is not None:
        lines[existing] = "removed = true"
    else:
        lines.insert(at + 1, "removed = true")
    return "\n".join(lines) + "\n"

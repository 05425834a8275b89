"""The cluster under test: node processes on loopback, wired to one another through proxies.

Theory of operation: `wire_cluster` takes a free port layout (server/local_cluster.py) for the
initial voters and the spare nodes, starts a ChaosNetwork with a proxy for every ordered pair of
nodes, and writes the cluster file with each node's `dial` map pointing at its proxies, so all
Raft traffic passes through links the harness can cut; clients reach the nodes directly. The
spares have `join = true`: they run from the start but are members only once added.
`node_processes` gives the harness its `raft-manager node` processes (server/processes.py),
with their pids kept in DIR/pids.json while the cluster runs, where `raft-manager cluster down
--dir DIR` finds them if the harness itself is killed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anyio.abc import TaskGroup

from raft_manager.client.cluster_view import Members
from raft_manager.server.config import ClusterConfig, load_config
from raft_manager.server.local_cluster import (
    free_base_port,
    node_argv,
    raft_addresses,
    write_config,
)
from raft_manager.server.pid_file import PidFile
from raft_manager.server.processes import NodeProcesses

from .proxy import ChaosNetwork

CLUSTER_FILE = "cluster.toml"


class StartError(Exception):
    """The cluster could not be started."""


def node_processes(directory: Path) -> NodeProcesses:
    """The harness's node processes for the cluster file `wire_cluster` writes in DIR."""
    config = directory / CLUSTER_FILE
    return NodeProcesses(
        directory, lambda node: node_argv(config, node), pid_file=PidFile(directory)
    )


@dataclass(frozen=True, slots=True)
class Cluster:
    config: ClusterConfig
    voters: tuple[str, ...]  # the initial voters
    spares: tuple[str, ...]  # running from the start, members only once added
    network: ChaosNetwork
    processes: NodeProcesses

    @property
    def nodes(self) -> tuple[str, ...]:
        return (*self.voters, *self.spares)

    @property
    def clients(self) -> dict[str, str]:
        """Every node's client address, by node id."""
        return {node: spec.client_address for node, spec in self.config.nodes.items()}

    def members(self, nodes: tuple[str, ...] | None = None) -> Members:
        """`nodes` (default: all) as cluster_view.statuses takes them."""
        chosen = self.nodes if nodes is None else nodes
        specs = self.config.nodes
        return Members(
            {node: specs[node].client_address for node in chosen},
            {node: specs[node].address for node in chosen},
        )


async def wire_cluster(
    processes: NodeProcesses, voters: int, spares: int, group: TaskGroup
) -> Cluster:
    """Proxies running in `group` and the cluster file written (where `processes` runs the
    nodes from); no node started yet."""
    total = voters + spares
    base = free_base_port(total)
    if base is None:
        raise StartError("no free loopback ports for the cluster")
    network = ChaosNetwork(raft_addresses(total, base))
    await network.start(group)
    nodes = list(raft_addresses(total, base))
    dial = {node: network.dial(node) for node in nodes}
    path = write_config(processes.directory, voters, base, "tcp", joining=spares, dial=dial)
    assert path == processes.directory / CLUSTER_FILE
    return Cluster(
        load_config(path), tuple(nodes[:voters]), tuple(nodes[voters:]), network, processes
    )

"""The cluster under test: node processes on loopback, wired to one another through proxies.

Theory of operation: `wire_cluster` takes a free port layout (server/local_cluster.py) for the
initial voters and the spare nodes, starts a ChaosNetwork with a proxy for every ordered pair of
nodes, and writes the cluster file with each node's `dial` map pointing at its proxies, so all
Raft traffic passes through links the harness can cut; clients reach the nodes directly. The
spares have `join = true`: they run from the start but are members only once added.
`NodeProcesses` owns the `raft-manager node` processes (each in its own session, so a Ctrl-C in
the terminal reaches only the harness): start one (again on the same data directory after a
kill), SIGKILL, SIGSTOP and SIGCONT one, tell which ended without being killed, and stop them
all: SIGCONT, SIGTERM, SIGKILL after a grace period, each process waited for. The pids are kept
in DIR/pids.json while the cluster runs, where `raft-manager cluster down --dir DIR` finds them
if the harness itself is killed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
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

from .proxy import ChaosNetwork

PIDS = "pids.json"  # the file `cluster down --dir` reads
STOP_GRACE = 5.0  # seconds a node gets to stop on SIGTERM before it is killed
REAP_SECONDS = 5.0  # how long a killed process is waited for


class StartError(Exception):
    """The cluster could not be started."""


class NodeProcesses:
    """The node processes of the cluster file DIR/cluster.toml, by node id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config = directory / "cluster.toml"
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self.down: set[str] = set()  # killed by the harness and not started again yet

    def start(self, node: str) -> None:
        with (self.directory / f"{node}.log").open("ab") as log:
            self._running[node] = subprocess.Popen(
                node_argv(self.config, node),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.down.discard(node)
        self._save()

    def kill(self, node: str) -> None:
        process = self._running[node]
        self.down.add(node)
        process.kill()
        process.wait(REAP_SECONDS)

    def pause(self, node: str) -> None:
        self._running[node].send_signal(signal.SIGSTOP)

    def resume(self, node: str) -> None:
        self._running[node].send_signal(signal.SIGCONT)

    def exited(self) -> dict[str, int]:
        """The nodes whose process ended without being killed, with its exit code."""
        return {
            node: code
            for node, process in self._running.items()
            if node not in self.down and (code := process.poll()) is not None
        }

    def stop_all(self) -> None:
        """Stop every node process and wait for each (idempotent)."""
        live = [process for process in self._running.values() if process.poll() is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process in live:
            try:
                process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(REAP_SECONDS)
        (self.directory / PIDS).unlink(missing_ok=True)

    def _save(self) -> None:
        pids = {node: process.pid for node, process in self._running.items()}
        (self.directory / PIDS).write_text(json.dumps(pids))


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
    redis_url = ClusterConfig.model_fields["redis_url"].default  # unused: TCP
    dial = {node: network.dial(node) for node in nodes}
    path = write_config(
        processes.directory, voters, base, "tcp", redis_url, joining=spares, dial=dial
    )
    assert path == processes.config
    return Cluster(
        load_config(path), tuple(nodes[:voters]), tuple(nodes[voters:]), network, processes
    )

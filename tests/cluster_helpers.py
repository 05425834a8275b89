"""Real clusters for process-level tests: `raft-manager node` processes on loopback sockets
and real disks, and the status helpers the tests use to watch them."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
from conftest import free_ports

from raft_manager.client import RaftClient

IDS = ("n1", "n2", "n3")


class Cluster:
    def __init__(
        self,
        directory: Path,
        redis_url: str | None = None,
        settings: tuple[str, ...] = (),
        joining: tuple[str, ...] = (),
    ) -> None:
        """IDS are the initial voters; `joining` nodes are in the file with `join = true`
        (started later and added with a membership change)."""
        self.directory = directory
        nodes = (*IDS, *joining)
        ports = iter(free_ports(3 * len(nodes)))
        self.raft_addresses = {n: f"127.0.0.1:{next(ports)}" for n in nodes}
        self.client_addresses = {n: f"127.0.0.1:{next(ports)}" for n in nodes}
        self.metrics_addresses = {n: f"127.0.0.1:{next(ports)}" for n in nodes}
        self._head = ['cluster_id = "test"', "tick_ms = 20", "election_ticks = 8", *settings]
        if redis_url is not None:
            self._head += ['transport = "redis"', f'redis_url = "{redis_url}"']
        self._joining = joining
        self.config = directory / "cluster.toml"
        self.write()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def write(self, dial: dict[str, dict[str, str]] | None = None) -> None:
        """(Re)write the cluster file; `dial` gives nodes proxy addresses for their peers."""
        lines = list(self._head)
        for node in self.raft_addresses:
            lines += [
                f"[nodes.{node}]",
                f'address = "{self.raft_addresses[node]}"',
                f'client_address = "{self.client_addresses[node]}"',
                f'data_dir = "data/{node}"',
                f'metrics_address = "{self.metrics_addresses[node]}"',
            ]
            if node in self._joining:
                lines.append("join = true")
            if dial and dial.get(node):
                pairs = ", ".join(f'{peer} = "{address}"' for peer, address in dial[node].items())
                lines.append(f"dial = {{ {pairs} }}")
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, node: str) -> None:
        log = (self.directory / f"{node}.log").open("ab")
        self.processes[node] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raft_manager.cli",
                "node",
                "--config",
                str(self.config),
                "--id",
                node,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, node: str) -> None:
        self.processes[node].send_signal(signal.SIGTERM)
        self.processes[node].wait(timeout=10)

    def kill(self, node: str) -> None:
        self.processes[node].send_signal(signal.SIGKILL)
        self.processes[node].wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def client(self) -> RaftClient:
        initial = [self.client_addresses[node] for node in IDS]
        return RaftClient(initial, timeout=5.0)


async def statuses_of(
    client: RaftClient, cluster: Cluster, *, digest: bool = False
) -> dict[str, dict[str, object]]:
    found = {}
    for node, address in cluster.client_addresses.items():
        try:
            found[node] = await client.status(address, digest=digest)
        except Exception:  # a node that is down or starting: not in the map
            continue
    return found


async def converged(
    client: RaftClient, cluster: Cluster, nodes: tuple[str, ...]
) -> dict[str, dict[str, object]]:
    """Statuses of `nodes`, with their state digests, taken at one applied index (the idle
    leader's clock entries keep the index moving, so only statuses that agree on it can be
    compared)."""
    with anyio.fail_after(10):
        while True:
            statuses = await statuses_of(client, cluster, digest=True)
            applied = {statuses[n]["applied_index"] for n in nodes if n in statuses}
            if len(statuses) >= len(nodes) and len(applied) == 1:
                return statuses
            await anyio.sleep(0.05)


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    """A 3-node cluster with a leader elected; stopped on the way out."""
    cluster = Cluster(directory)
    for node in IDS:
        cluster.start(node)
    try:
        anyio.run(_leader_elected, cluster)
        yield cluster
    finally:
        cluster.stop_all()


async def _leader_elected(cluster: Cluster) -> None:
    async with cluster.client() as client:
        await leader_elected(client, cluster)


async def leader_elected(client: RaftClient, cluster: Cluster) -> str:
    """Wait (up to 20 s: node processes start slowly on a loaded machine) for a leader."""
    with anyio.fail_after(20):
        while True:
            statuses = await statuses_of(client, cluster)
            leaders = [node for node, status in statuses.items() if status["role"] == "leader"]
            if leaders:
                return leaders[0]
            await anyio.sleep(0.05)

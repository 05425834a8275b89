"""Real clusters for process-level tests: `raft-manager node` processes on loopback sockets
and real disks, and the status helpers the tests use to watch them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
from conftest import free_ports

from raft_manager.client import RaftClient

IDS = ("n1", "n2", "n3")


class Cluster:
    def __init__(
        self, directory: Path, redis_url: str | None = None, settings: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        ports = free_ports(9)
        self.raft_addresses = {n: f"127.0.0.1:{ports[k]}" for k, n in enumerate(IDS)}
        self.client_addresses = {n: f"127.0.0.1:{ports[k + 3]}" for k, n in enumerate(IDS)}
        self.metrics_addresses = {n: f"127.0.0.1:{ports[k + 6]}" for k, n in enumerate(IDS)}
        lines = ['cluster_id = "test"', "tick_ms = 20", "election_ticks = 8", *settings]
        if redis_url is not None:
            lines += ['transport = "redis"', f'redis_url = "{redis_url}"']
        for node in IDS:
            lines += [
                f"[nodes.{node}]",
                f'address = "{self.raft_addresses[node]}"',
                f'client_address = "{self.client_addresses[node]}"',
                f'data_dir = "data/{node}"',
                f'metrics_address = "{self.metrics_addresses[node]}"',
            ]
        self.config = directory / "cluster.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

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
        return RaftClient(list(self.client_addresses.values()), timeout=5.0)


async def statuses_of(client: RaftClient, cluster: Cluster) -> dict[str, dict[str, object]]:
    found = {}
    for node, address in cluster.client_addresses.items():
        try:
            found[node] = await client.status(address)
        except Exception:  # a node that is down or starting: not in the map
            continue
    return found


async def converged(
    client: RaftClient, cluster: Cluster, nodes: tuple[str, ...]
) -> dict[str, dict[str, object]]:
    """Statuses of `nodes` taken at one applied index (the idle leader's clock entries keep
    the index moving, so only statuses that agree on it can be compared)."""
    with anyio.fail_after(10):
        while True:
            statuses = await statuses_of(client, cluster)
            applied = {statuses[n]["applied_index"] for n in nodes if n in statuses}
            if len(statuses) >= len(nodes) and len(applied) == 1:
                return statuses
            await anyio.sleep(0.05)

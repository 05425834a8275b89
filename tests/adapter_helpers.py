"""What the peer-adapter tests share: nodes run in this process with their adapters (the same
`run_node` and services `raft-manager node` runs), a peer played by the test, and waiting."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from bus_helpers import CLUSTER, settings
from conftest import free_ports
from pydantic import BaseModel

from raft_manager.adapters import Bus, Envelope, Handlers
from raft_manager.adapters.handlers import Handler
from raft_manager.adapters.messages import MODELS
from raft_manager.adapters.service import adapter_services
from raft_manager.client import RaftClient
from raft_manager.server.config import ClusterConfig, load_config
from raft_manager.server.node import run_node
from raft_manager.transport.keys import KeyRing

ALL_PEERS = ("quorum-manager", "crdt-synchronizer", "security-manager", "performance-benchmarker")
# Timings for tests: a request may take 4 s (budget: 0.8 x handler_timeout_s); reports and
# snapshots come often; unacknowledged feed events are resent after half a second.
ADAPTERS = {
    "claim_idle_ms": 10_500,
    "handler_timeout_s": 5,
    "publish_timeout_s": 3,
    "report_period_s": 0.5,
    "metrics_period_s": 0.3,
    "feed_resend_s": 0.5,
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


class Nodes:
    """Nodes of one cluster file, each run in this process by `start` until `stop`."""

    def __init__(
        self,
        directory: Path,
        redis_url: str,
        *,
        voters: tuple[str, ...] = ("n1",),
        joining: tuple[str, ...] = (),
        peers: tuple[str, ...] = ALL_PEERS,
        top: dict[str, Any] | None = None,
        sections: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        nodes = (*voters, *joining)
        ports = iter(free_ports(2 * len(nodes)))
        self.raft_addresses = {n: f"127.0.0.1:{next(ports)}" for n in nodes}
        self.client_addresses = {n: f"127.0.0.1:{next(ports)}" for n in nodes}
        lines = [f'cluster_id = "{CLUSTER}"', "tick_ms = 20", "election_ticks = 8"]
        lines += [f"{key} = {_toml(value)}" for key, value in (top or {}).items()]
        tables = {"adapters": {"redis_url": redis_url, "peers": list(peers), **ADAPTERS}}
        for name, values in (sections or {}).items():
            tables[name] = {**tables.get(name, {}), **values}
        for name, values in tables.items():
            lines.append(f"[{name}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        for node in nodes:
            lines += [
                f"[nodes.{node}]",
                f'address = "{self.raft_addresses[node]}"',
                f'client_address = "{self.client_addresses[node]}"',
                f'data_dir = "data/{node}"',
            ]
            if node in joining:
                lines.append("join = true")
        self.path = directory / "cluster.toml"
        self.path.write_text("\n".join(lines) + "\n")
        self.config: ClusterConfig = load_config(self.path)
        self.voters = voters
        self._group: TaskGroup | None = None
        self._running: dict[str, tuple[anyio.CancelScope, anyio.Event]] = {}

    async def start(self, node: str) -> None:
        assert self._group is not None, "use `async with running(nodes, ...)`"
        await self._group.start(self._run, node)

    async def _run(self, node: str, *, task_status: TaskStatus[None]) -> None:
        stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._running[node] = (scope, stopped)
                task_status.started()
                await run_node(self.config, node, adapter_services(self.config))
        finally:
            stopped.set()

    async def stop(self, node: str) -> None:
        scope, stopped = self._running.pop(node)
        scope.cancel()
        await stopped.wait()

    def client(self, **kwargs: Any) -> RaftClient:
        return RaftClient([self.client_addresses[n] for n in self.voters], **kwargs)

    async def leader(self, timeout: float = 10) -> str:
        async with self.client(timeout=1) as client:
            with anyio.fail_after(timeout):
                while True:
                    for node in self._running:
                        try:
                            status = await client.status(self.client_addresses[node])
                        except Exception:  # starting: ask again
                            continue
                        if status["role"] == "leader":
                            return node
                    await anyio.sleep(0.05)


@asynccontextmanager
async def running(nodes: Nodes, *started: str) -> AsyncIterator[Nodes]:
    async with anyio.create_task_group() as group:
        nodes._group = group
        for node in started:
            await nodes.start(node)
        await nodes.leader()
        yield nodes
        group.cancel_scope.cancel()


class Peer:
    """A swarm peer played by the test: its bus (identity `<role>.test`), a consumer of its
    role's stream keeping every message by type, and requests to raft-manager."""

    def __init__(
        self, url: str, role: str, keyring: KeyRing | None = None, cluster: str = CLUSTER
    ) -> None:
        self.role = role
        self.bus = Bus(settings(url), cluster_id=cluster, identity=f"{role}.test", keyring=keyring)
        self.received: dict[str, list[Envelope]] = defaultdict(list)
        self.replies: list[Envelope] = []
        self.handlers = Handlers()

    def keep(self, *types: str) -> None:
        """Keep the messages of these types that arrive on the role's stream."""
        for type in types:
            self.handlers.add(type, MODELS[type], self._keep)

    async def _keep(self, envelope: Envelope, payload: BaseModel) -> None:
        self.received[envelope.type].append(envelope)

    def payloads(self, type: str) -> list[Any]:
        return [MODELS[type].model_validate(e.payload) for e in self.received[type]]

    async def ask(
        self, type: str, payload: dict[str, Any], *, to: str = "raft-manager", timeout: float = 8
    ) -> Any:
        """Send a request; the reply's payload, parsed by its type's model."""
        reply = await self.bus.request(to, type, payload, timeout)
        self.replies.append(reply)
        return MODELS[reply.type].model_validate(reply.payload)


@asynccontextmanager
async def peer(
    url: str,
    role: str,
    *types: str,
    routes: dict[str, Handler[Any]] | None = None,
    consume: bool = True,
    **kwargs: Any,
) -> AsyncIterator[Peer]:
    """A running peer: its reply consumer and (unless not to `consume`) its role's consumer,
    which keeps the messages of `types` and hands those of `routes` to their handlers."""
    played = Peer(url, role, **kwargs)
    played.keep(*types)
    for type, handler in (routes or {}).items():
        played.handlers.add(type, MODELS[type], handler)
    async with played.bus, anyio.create_task_group() as group:
        await group.start(played.bus.reply_consumer().run)
        if consume:
            await group.start(played.bus.serve(role, played.handlers).run)
        yield played
        group.cancel_scope.cancel()


async def eventually(condition: Any, timeout: float = 10.0, every: float = 0.02) -> None:
    """Wait until `condition()` (sync or async) is true."""
    with anyio.fail_after(timeout):
        while True:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await anyio.sleep(every)

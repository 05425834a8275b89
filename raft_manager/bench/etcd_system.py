"""etcd as a system under measurement: members of the system's `etcd` binary on loopback.

Theory of operation: each member is an `etcd` process with its data dir in the bench's folder
and its peer and client URLs on 127.0.0.1 (peer port base+k-1, client port base+100+k-1, as in
server/local_cluster.py); every other setting is etcd's default (a write is fsynced before it
is acknowledged; heartbeat 100 ms, election timeout 1 s). The bench speaks etcd's JSON gateway
(http_json.py): `POST /v3/maintenance/status` tells each member's id and the leader it follows,
`POST /v3/kv/put` writes VALUE under KEY. A writer sends to the member that led when it was
made; an attempt that fails (no answer within ATTEMPT_SECONDS, a broken connection, an error
status) moves it on to the next member after a backoff, as etcd's own client does (a follower
forwards writes to its leader, so any live member will do), until WRITE_TIMEOUT.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio

from raft_manager.client.client import BACKOFF_MAX, BACKOFF_START
from raft_manager.server.local_cluster import CLIENT_PORT_OFFSET, free_base_port
from raft_manager.server.processes import NodeProcesses

from .http_json import HttpError, HttpJson
from .processes import ProcessSystem
from .system import KEY, VALUE, WRITE_TIMEOUT, BenchError, Write, WriteFailed

NAME = "etcd"
ATTEMPT_SECONDS = 1.0  # one member's time to answer, as RaftClient's attempt_timeout
STATUS_SECONDS = 1.0
STATUS_PATH = "/v3/maintenance/status"
PUT_PATH = "/v3/kv/put"
PUT_BODY = json.dumps(
    {
        "key": base64.b64encode(KEY.encode()).decode(),
        "value": base64.b64encode(VALUE.encode()).decode(),
    }
).encode()


def etcd_missing() -> str | None:
    """Why etcd cannot run here, or None when it can."""
    return None if shutil.which("etcd") else "not installed (no etcd binary on PATH)"


@contextmanager
def etcd_system(directory: Path, nodes: int) -> Iterator[EtcdSystem]:
    """Start the members; stop them on the way out."""
    binary = shutil.which("etcd")
    base = free_base_port(nodes)
    if binary is None or base is None:
        raise BenchError("no etcd binary on PATH" if binary is None else "no free ports for etcd")
    names = [f"n{k}" for k in range(1, nodes + 1)]
    peers = {name: f"http://127.0.0.1:{base + k}" for k, name in enumerate(names)}
    clients = {name: f"127.0.0.1:{base + CLIENT_PORT_OFFSET + k}" for k, name in enumerate(names)}
    cluster = ",".join(f"{name}={peers[name]}" for name in names)
    argv = {
        name: [
            binary,
            f"--name={name}",
            f"--data-dir={directory / 'data' / name}",
            f"--listen-peer-urls={peers[name]}",
            f"--initial-advertise-peer-urls={peers[name]}",
            f"--listen-client-urls=http://{clients[name]}",
            f"--advertise-client-urls=http://{clients[name]}",
            f"--initial-cluster={cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=raft-manager-bench",
            "--logger=zap",
            "--log-level=error",
        ]
        for name in names
    }
    # SIGKILL at the end: a member's graceful stop waits seconds for peers that stop too
    with closing(NodeProcesses(directory, argv.__getitem__, stop=signal.SIGKILL)) as processes:
        processes.start_all(argv)
        yield EtcdSystem(processes, clients)


class EtcdSystem(ProcessSystem):
    name = NAME
    fsync = True
    setup = (
        "defaults: fsync on, heartbeat 100 ms, election timeout 1 s; the bench's JSON-gateway "
        f"client gives a member {ATTEMPT_SECONDS:g} s to answer before it tries the next"
    )

    def __init__(self, processes: NodeProcesses, clients: dict[str, str]) -> None:
        super().__init__(processes)
        self._clients = clients

    async def _statuses(self) -> dict[str, tuple[str, str]]:
        """node -> (its member id, the member id of the leader it follows) for those that
        answer within STATUS_SECONDS (a fresh connection each: a member may have restarted)."""
        found: dict[str, tuple[str, str]] = {}

        async def ask(node: str) -> None:
            gateway = HttpJson(self._clients[node])
            with anyio.move_on_after(STATUS_SECONDS), suppress(HttpError, KeyError, TypeError):
                code, body = await gateway.post(STATUS_PATH, b"{}")
                if code == 200:
                    found[node] = (str(body["header"]["member_id"]), str(body["leader"]))
            await gateway.close()

        async with anyio.create_task_group() as group:
            for node in self._clients:
                group.start_soon(ask, node)
        return found

    async def leader(self) -> str | None:
        answers = await self._statuses()
        members = {member: node for node, (member, _) in answers.items()}
        followed = sorted({leader for _, leader in answers.values() if leader in members})
        return members[followed[0]] if len(followed) == 1 else None

    async def settled(self) -> bool:
        answers = await self._statuses()
        members = {member for member, _ in answers.values()}
        followed = {leader for _, leader in answers.values()}
        return len(answers) == len(self._clients) and len(followed) == 1 and followed <= members

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[Write]:
        order = list(self._clients)
        leader = await self.leader()
        if leader is not None:
            start = order.index(leader)
            order = order[start:] + order[:start]
        targets = _Targets(order, {node: HttpJson(self._clients[node]) for node in order})
        try:
            yield targets.write
        finally:
            for gateway in targets.gateways.values():
                await gateway.close()


class _Targets:
    """The members a writer sends to, the current one first; shared by concurrent writes."""

    def __init__(self, order: list[str], gateways: dict[str, HttpJson]) -> None:
        self.order = order
        self.gateways = gateways
        self.current = 0
        self._jitter = random.Random()

    async def write(self) -> None:
        deadline = time.monotonic() + WRITE_TIMEOUT
        backoff = BACKOFF_START
        problem = "no member answered"
        while (remaining := deadline - time.monotonic()) > 0:
            at = self.current
            node = self.order[at]
            with anyio.move_on_after(min(ATTEMPT_SECONDS, remaining)):
                try:
                    code, body = await self.gateways[node].post(PUT_PATH, PUT_BODY)
                except HttpError as error:
                    problem = f"{node}: {error}"
                else:
                    if code == 200:
                        return
                    problem = f"{node}: HTTP {code} {_error_text(body)}"
            if self.current == at:  # the first write to see this member fail moves everyone on
                self.current = (at + 1) % len(self.order)
            await anyio.sleep(min(backoff * self._jitter.random(), max(remaining, 0)))
            backoff = min(backoff * 2, BACKOFF_MAX)
        raise WriteFailed(f"etcd put gave no answer within {WRITE_TIMEOUT} s: {problem}")


def _error_text(body: Any) -> str:
    return str(body.get("error", "")) if isinstance(body, dict) else ""

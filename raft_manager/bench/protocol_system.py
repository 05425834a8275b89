"""A system whose nodes speak raft-manager's client protocol: raft-manager, and PySyncObj
behind the bench's own node (pysyncobj_node.py).

Theory of operation: the nodes' client addresses are all it needs besides their processes. Who
leads and whether the cluster has settled come from every node's `status` answer
(client/cluster_view.py: settled means healthy, a leader and every node answering); a write is
one `memory.put` of VALUE under KEY through a RaftClient, the project's own client (pipelined,
following `not_leader` redirects, retrying through elections), so both systems are driven by
the same client code and differ only in their nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from raft_manager.client import ClientError, RaftClient
from raft_manager.client.cluster_view import Members, health_of, leader_of, statuses
from raft_manager.server.processes import NodeProcesses

from .processes import ProcessSystem
from .system import KEY, VALUE, WRITE_TIMEOUT, Write, WriteFailed

PUT = {"op": "memory.put", "key": KEY, "value": VALUE}


class ProtocolSystem(ProcessSystem):
    """Nodes run by `processes`, each answering on its client address in `clients`."""

    def __init__(
        self, name: str, fsync: bool, setup: str, processes: NodeProcesses, clients: dict[str, str]
    ) -> None:
        self.name = name
        self.fsync = fsync
        self.setup = setup
        super().__init__(processes)
        self._members = Members(clients, {})

    @property
    def addresses(self) -> list[str]:
        """The nodes' client addresses."""
        return list(self._members.clients.values())

    def address_of(self, node: str) -> str:
        """One node's client address."""
        return self._members.clients[node]

    async def leader(self) -> str | None:
        return leader_of(await statuses(self._members))[0]

    async def settled(self) -> bool:
        """Every node answers and names the same leader in the same term."""
        answers = await statuses(self._members)
        if health_of(self._members, answers).state != "healthy":
            return False
        views = {(answer.get("leader"), answer.get("term")) for answer in answers.values()}
        return len(views) == 1

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[Write]:
        async with RaftClient(self.addresses, timeout=WRITE_TIMEOUT) as client:

            async def write() -> None:
                try:
                    await client.command(PUT)
                except (ClientError, TimeoutError) as error:
                    raise WriteFailed(str(error)) from None

            yield write

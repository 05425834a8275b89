"""A fault-injecting loopback proxy: one per directed link between two nodes.

Theory of operation: node A reaches node B through `LinkProxy(A->B)` (A's cluster file entry
`dial = {B = "<proxy address>"}`), which accepts A's connections and pipes each one to B's real
address. `cut()` makes the link behave like a network partition: the connections it carries are
closed, and new ones are accepted but everything sent on them is swallowed (a black hole, as
when packets are dropped: the sender's writes succeed and nothing arrives). `restore()` closes
the black-holed connections (a stream that lost bytes mid-frame cannot be resumed; the sender
reconnects, as after any broken connection) and pipes new ones again. Raft frames go one way on
each connection, but both directions are piped, so the proxy assumes nothing about the protocol.
`ChaosNetwork` holds the proxies for every ordered pair of nodes and cuts and restores them by
partition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import anyio
from anyio.abc import SocketStream, TaskGroup

from raft_manager.transport.base import parse_address

_CHUNK = 65536
_GONE = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


class LinkProxy:
    def __init__(self, target: str) -> None:
        self.target = target
        self.port = 0  # bound by `serve`
        self.is_cut = False
        self._scopes: set[anyio.CancelScope] = set()
        self.connections = 0  # accepted so far (for tests and reports)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(
        self,
        group: TaskGroup,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        async with listener:
            await listener.serve(self._carry, task_group=group)

    def cut(self) -> None:
        if not self.is_cut:
            self.is_cut = True
            self._close_all()

    def restore(self) -> None:
        if self.is_cut:
            self.is_cut = False
            self._close_all()

    def _close_all(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    async def _carry(self, incoming: SocketStream) -> None:
        self.connections += 1
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with incoming:
                    if self.is_cut:
                        await _swallow(incoming)
                    else:
                        await self._pipe(incoming)
            except _GONE:
                pass
            finally:
                self._scopes.discard(scope)

    async def _pipe(self, incoming: SocketStream) -> None:
        host, port = parse_address(self.target)
        try:
            outgoing = await anyio.connect_tcp(host, port)
        except OSError:
            return  # the node is down: the caller sees its connection close, as without us
        async with outgoing, anyio.create_task_group() as pumps:
            pumps.start_soon(_pump, incoming, outgoing, pumps)
            pumps.start_soon(_pump, outgoing, incoming, pumps)


async def _pump(source: SocketStream, sink: SocketStream, pumps: TaskGroup) -> None:
    """Copy until either side goes away, then end both directions."""
    with contextlib.suppress(*_GONE):
        while True:
            await sink.send(await source.receive(_CHUNK))
    pumps.cancel_scope.cancel()


async def _swallow(stream: SocketStream) -> None:
    with contextlib.suppress(*_GONE):
        while True:
            await stream.receive(_CHUNK)


class ChaosNetwork:
    """Proxies for every ordered pair of `nodes` (id -> real Raft address)."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.links = {
            (source, target): LinkProxy(address)
            for target, address in nodes.items()
            for source in nodes
            if source != target
        }

    async def start(self, group: TaskGroup) -> None:
        for link in self.links.values():
            await group.start(link.serve, group)

    def dial(self, source: str) -> dict[str, str]:
        """The addresses `source` should dial its peers at (its `dial` map)."""
        return {target: link.address for (frm, target), link in self.links.items() if frm == source}

    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Cut every link between nodes of different groups (both ways); restore the others.
        A node in no group is cut off from everyone."""
        side = {node: number for number, group in enumerate(groups) for node in group}
        for (source, target), link in self.links.items():
            apart = source not in side or target not in side or side[source] != side[target]
            if apart:
                link.cut()
            else:
                link.restore()

    def heal(self) -> None:
        for link in self.links.values():
            link.restore()

    @property
    def cut_links(self) -> list[tuple[str, str]]:
        return sorted(pair for pair, link in self.links.items() if link.is_cut)

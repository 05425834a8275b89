"""Raft messages over TCP: length-prefixed msgpack frames, one outbound connection per peer.

Theory of operation: the transport listens on its own address; every peer that wants to talk to
us dials in, and we dial every peer we talk to (so each direction has its own connection, and a
connection only ever carries frames one way). Connections are FramedConnections (framed.py):
inbound, each burst of whole frames is decoded and delivered in the event loop's callback, with
no task in between; a length prefix above the cap, or a connection that breaks mid-frame, closes
that connection; a frame that fails to decode is dropped and counted by reason; either way the
node keeps serving. Outbound, `send` never blocks: it puts the frame on the peer's connection
(written when `pending_writes` is flushed, at the latest early in the loop's next turn, a burst
as one write) or, while there is none, in the peer's bounded queue; what does not fit is dropped
and counted (a slow peer costs at most its queue). One task per peer (re)connects, with
exponential backoff and jitter, and waits for its connection to end: the peer never writes back,
so the end of its stream means the peer went away, and the sender reconnects as soon as the peer
restarts instead of losing its next message to a dead socket. Messages lost with a broken
connection are Raft's to resend; the transport only promises not to reorder what it delivers on
one connection.

Optionally (both off by default) connections run over mutual TLS (`tls`, see tls.py: a peer
without a certificate from the cluster's CA is refused at the handshake, counted as
tls-handshake) and frames carry a MAC (`authenticator`, see auth.py: a frame that fails it is
dropped and counted by reason, like a frame that fails to decode). TLS is spoken by the
connection itself (framed.py), from its first byte, so nothing is read as a frame before the
handshake passed; the side whose handshake fails counts it (with TLS 1.3 a listener refuses a
dialler's certificate after the dialler's handshake completed: the dialler sees a connection
that closes at once, and backs off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from raft_manager.core import Message, NodeId

from .base import DEFAULT_QUEUE_MESSAGES, Backoff, TransportStats, parse_address
from .codec import (
    DEFAULT_MAX_FRAME_BYTES,
    LENGTH_PREFIX,
    Authenticator,
    FrameEncoder,
    FrameError,
    decode,
)
from .framed import FramedConnection, PendingWrites, serve_framed
from .tls import TlsContexts

log = logging.getLogger("raft_manager.transport")
# A connection that lasted this long was up: after its end the sender reconnects at once; after
# a shorter one (accepted, then closed: a TLS refusal, say) it waits out the backoff first.
STEADY_SECONDS = 0.25
CONNECT_SECONDS = 2.0


class _Peer:
    """The outbound side of one peer: its connection when up, the frames queued meanwhile, and
    the task that keeps it connected."""

    def __init__(self, address: str, capacity: int) -> None:
        self.address = address
        self.capacity = capacity
        self.link: FramedConnection | None = None
        self.queued: list[bytes] = []
        self.scope = anyio.CancelScope()  # cancelled when the peer leaves the cluster


class TcpTransport:
    def __init__(
        self,
        node_id: NodeId,
        cluster_id: str,
        listen: str,
        peers: dict[NodeId, str],
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        queue_messages: int = DEFAULT_QUEUE_MESSAGES,
        authenticator: Authenticator | None = None,
        tls: TlsContexts | None = None,
        pending_writes: PendingWrites | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.listen = listen
        self.max_frame_bytes = max_frame_bytes
        self.queue_messages = queue_messages
        self.stats = TransportStats()
        self.authenticator = authenticator
        self._encode = FrameEncoder(cluster_id, authenticator)
        self.tls = tls
        # Shared with the node's other connections, so one flush writes them all (framed.py).
        self.pending_writes = pending_writes
        self._peers: dict[NodeId, _Peer] = {}
        self._addresses = {peer: address for peer, address in peers.items() if peer != node_id}
        self._task_group: TaskGroup | None = None
        self._deliver: Callable[[Message], None] | None = None
        self._lost: Callable[[NodeId], None] | None = None
        self.port = 0  # the port actually bound (useful with port 0)

    async def serve(
        self,
        task_group: TaskGroup,
        deliver: Callable[[Message], None],
        *,
        lost: Callable[[NodeId], None] | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and run the peer senders inside `task_group` until it is cancelled; `lost`
        hears of each peer whose connection, once up, closed or failed."""
        self._task_group = task_group
        self._deliver = deliver
        self._lost = lost

        def started(port: int) -> None:
            self.port = port
            for peer, address in self._addresses.items():
                self._start_peer(peer, address)
            task_status.started()

        await serve_framed(self.listen, self._accepted, started)

    def _start_peer(self, peer: NodeId, address: str) -> None:
        assert self._task_group is not None
        state = _Peer(address, self.queue_messages)
        self._peers[peer] = state
        self._task_group.start_soon(self._run_peer, peer, state)

    def set_peers(self, peers: dict[NodeId, str]) -> None:
        wanted = {peer: address for peer, address in peers.items() if peer != self.node_id}
        for peer, state in list(self._peers.items()):
            if wanted.get(peer) != state.address:
                state.scope.cancel()
                del self._peers[peer]
                log.info("event=peer_removed peer=%s", peer)
        self._addresses = wanted
        if self._task_group is not None:
            for peer, address in wanted.items():
                if peer not in self._peers:
                    self._start_peer(peer, address)

    def send(self, msg: Message) -> None:
        """Send `msg` to its recipient; never blocks (a full queue or unknown peer drops it)."""
        peer = self._peers.get(msg.to)
        if peer is None:
            self.stats.dropped["unknown-peer"] += 1
            return
        try:
            frame = self._encode(msg)
        except FrameError as error:  # only when sealing: no key valid now
            self.stats.dropped[error.reason] += 1
            return
        link = peer.link
        if link is not None and link.connected:
            self._put(link, frame)
        elif len(peer.queued) < peer.capacity:
            peer.queued.append(frame)
        else:
            self.stats.dropped["queue-full"] += 1

    async def _run_peer(self, peer: NodeId, state: _Peer) -> None:
        with state.scope:
            await self._keep_connected(peer, state)

    async def _keep_connected(self, peer: NodeId, state: _Peer) -> None:
        backoff = Backoff(f"{self.node_id}->{peer}")
        host, port = parse_address(state.address)
        while True:
            link = await self._dial(host, port, state.capacity)
            if link is None:
                await backoff.wait()
                continue
            try:
                log.info("event=peer_connected peer=%s address=%s", peer, state.address)
                connected = anyio.current_time()
                state.link = link
                queued, state.queued = state.queued, []
                for frame in queued:
                    self._put(link, frame)
                await link.closed
            finally:
                state.link = None
                link.abort()
            self.stats.dropped["connection-lost"] += link.unsent
            log.info("event=peer_disconnected peer=%s", peer)
            if self._lost is not None:
                self._lost(peer)
            if anyio.current_time() - connected < STEADY_SECONDS:
                await backoff.wait()  # accepted, then closed at once: a peer refusing us
            else:
                backoff.reset()

    async def _dial(self, host: str, port: int, capacity: int) -> FramedConnection | None:
        """A connection to a peer (over TLS when configured), or None if it cannot be made."""
        tls = None if self.tls is None else (self.tls.client, False, host)
        link = FramedConnection(
            self.max_frame_bytes,
            _ignore,
            capacity=capacity,
            tls=tls,
            pending_writes=self.pending_writes,
        )
        try:
            with anyio.fail_after(CONNECT_SECONDS):
                await asyncio.get_running_loop().create_connection(lambda: link, host, port)
        except (OSError, TimeoutError):
            link.abort()
            return None
        if not await link.secured:  # only with TLS: a failed or slow handshake
            self.stats.dropped["tls-handshake"] += 1
            log.warning("event=tls_handshake_failed server_side=False peer=%s:%d", host, port)
            return None
        return link

    def _put(self, link: FramedConnection, frame: bytes) -> None:
        if link.put(frame):
            self.stats.sent += 1
            self.stats.bytes_out += len(frame) + LENGTH_PREFIX.size
        else:
            self.stats.dropped["queue-full"] += 1

    def _accepted(self) -> FramedConnection:
        """The protocol for a connection a peer dialled in on."""

        def closed(error: Exception | None) -> None:
            if isinstance(error, FrameError):  # the stream cannot go on: hung up
                self.stats.dropped[error.reason] += 1
                log.warning("event=connection_closed reason=%s detail=%r", error.reason, str(error))

        tls = None if self.tls is None else (self.tls.server, True, None)
        return FramedConnection(
            self.max_frame_bytes,
            self._accept_all,
            closed,
            tls=tls,
        )

    def _accept_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.stats.bytes_in += len(frame) + LENGTH_PREFIX.size
            self._accept(frame)

    def _accept(self, frame: bytes) -> None:
        try:
            msg = decode(frame, self.cluster_id, self.node_id, self.authenticator)
        except FrameError as error:
            self.stats.dropped[error.reason] += 1
            log.debug("event=frame_dropped reason=%s", error.reason)  # counted in stats
            return
        self.stats.received += 1
        assert self._deliver is not None
        self._deliver(msg)


def _ignore(frames: list[bytes]) -> None:
    """What a peer sends on a connection we dialled: nothing is expected, nothing is read."""

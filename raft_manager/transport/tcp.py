"""Raft messages over TCP: length-prefixed msgpack frames, one outbound connection per peer.

Theory of operation: the transport listens on its own address; every peer that wants to talk to
us dials in, and we dial every peer we talk to (so each direction has its own connection, and a
connection only ever carries frames one way). Inbound, each connection is read a burst of frames
at a time: a length prefix above the cap, or a connection that breaks mid-frame, closes that
connection; a frame that fails to decode is dropped and counted by reason; either way the node
keeps serving. Outbound, `send` never blocks: it puts the message in the peer's bounded queue (a
full queue drops it, counted: a slow peer costs at most its queue), and one task per peer drains
the queue, writing everything queued as one buffer, (re)connecting with exponential backoff and
jitter when needed. It also watches its connection for the peer closing it (the peer never
writes back), so a sender that had nothing to say reconnects as soon as the peer restarts
instead of losing its next message to a dead socket. Messages lost with a broken connection are
Raft's to resend; the transport only promises not to reorder what it delivers on one connection.

Optionally (both off by default) connections run over mutual TLS (`tls`, see tls.py: a peer
without a certificate from the cluster's CA is refused at the handshake, counted as
tls-handshake) and frames carry a MAC (`authenticator`, see auth.py: a frame that fails it is
dropped and counted by reason, like a frame that fails to decode).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
from anyio.abc import ByteStream, SocketStream, TaskGroup
from anyio.streams.tls import TLSStream

from raft_manager.core import Message, NodeId

from .base import DEFAULT_QUEUE_MESSAGES, Backoff, Outbox, TransportStats, parse_address
from .codec import (
    DEFAULT_MAX_FRAME_BYTES,
    LENGTH_PREFIX,
    Authenticator,
    FrameError,
    decode,
    encode_with_length,
)
from .framing import FrameReader
from .tls import HANDSHAKE_SECONDS, TlsContexts

log = logging.getLogger("raft_manager.transport")
# A connection that lasted this long was up: after its end the sender reconnects at once; after
# a shorter one (accepted, then closed: a TLS refusal, say) it waits out the backoff first.
STEADY_SECONDS = 0.25


class _Peer:
    """The outbound side of one peer: a bounded queue and the task that drains it."""

    def __init__(self, address: str, capacity: int) -> None:
        self.address = address
        self.outbox = Outbox[bytes](capacity)
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
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.listen = listen
        self.max_frame_bytes = max_frame_bytes
        self.queue_messages = queue_messages
        self.stats = TransportStats()
        self.authenticator = authenticator
        self.tls = tls
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
        host, port = parse_address(self.listen)
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        for peer, address in self._addresses.items():
            self._start_peer(peer, address)
        task_status.started()
        async with listener:
            await listener.serve(self._read_connection, task_group=task_group)

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
        """Queue `msg` for its recipient; never blocks (a full queue or unknown peer drops it)."""
        peer = self._peers.get(msg.to)
        if peer is None:
            self.stats.dropped["unknown-peer"] += 1
            return
        try:
            frame = encode_with_length(msg, self.cluster_id, self.authenticator)
        except FrameError as error:  # only when sealing: no key valid now
            self.stats.dropped[error.reason] += 1
            return
        if not peer.outbox.put(frame):
            self.stats.dropped["queue-full"] += 1

    async def _run_peer(self, peer: NodeId, state: _Peer) -> None:
        with state.scope:
            await self._drain_to(peer, state)

    async def _drain_to(self, peer: NodeId, state: _Peer) -> None:
        backoff = Backoff(f"{self.node_id}->{peer}")
        while True:
            try:
                host, port = parse_address(state.address)
                stream: ByteStream = await anyio.connect_tcp(host, port)
                if self.tls is not None:
                    stream = await self._handshake(stream, server_side=False, hostname=host)
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                await backoff.wait()
                continue
            log.info("event=peer_connected peer=%s address=%s", peer, state.address)
            connected = anyio.current_time()
            in_hand: list[bytes] = []  # taken from the outbox, not yet written
            async with stream, anyio.create_task_group() as connection:
                connection.start_soon(_until_peer_leaves, stream, connection.cancel_scope)
                await self._write_queued(stream, state, in_hand)
                connection.cancel_scope.cancel()
            self.stats.dropped["connection-lost"] += len(in_hand)
            log.info("event=peer_disconnected peer=%s", peer)
            if self._lost is not None:
                self._lost(peer)
            if anyio.current_time() - connected < STEADY_SECONDS:
                await backoff.wait()  # accepted, then closed at once: a peer refusing us
            else:
                backoff.reset()

    async def _write_queued(self, stream: ByteStream, state: _Peer, in_hand: list[bytes]) -> None:
        """Write what the outbox holds, everything queued as one write, until the connection
        fails; `in_hand` keeps the frames of a write that did not go out."""
        try:
            while True:
                in_hand[:] = await state.outbox.take_all()
                buffer = b"".join(in_hand)
                await stream.send(buffer)
                self.stats.sent += len(in_hand)
                self.stats.bytes_out += len(buffer)
                in_hand.clear()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return

    async def _handshake(
        self, raw: ByteStream, *, server_side: bool, hostname: str | None = None
    ) -> ByteStream:
        """`raw` wrapped in TLS (closed, and the failure counted and raised, if the handshake
        fails or takes longer than HANDSHAKE_SECONDS)."""
        assert self.tls is not None
        context = self.tls.server if server_side else self.tls.client
        try:
            with anyio.fail_after(HANDSHAKE_SECONDS):
                return await TLSStream.wrap(
                    raw,
                    server_side=server_side,
                    hostname=hostname,
                    ssl_context=context,
                    standard_compatible=False,
                )
        except (OSError, TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream) as error:
            self.stats.dropped["tls-handshake"] += 1
            log.warning("event=tls_handshake_failed server_side=%s error=%r", server_side, error)
            await anyio.aclose_forcefully(raw)
            raise anyio.BrokenResourceError("TLS handshake failed") from error

    async def _read_connection(self, raw: SocketStream) -> None:
        async with raw:
            stream: ByteStream = raw
            if self.tls is not None:
                try:
                    stream = await self._handshake(raw, server_side=True)
                except anyio.BrokenResourceError:
                    return
            reader = FrameReader(stream, self.max_frame_bytes)
            try:
                while (frames := await reader.next_frames()) is not None:
                    for frame in frames:
                        self.stats.bytes_in += len(frame) + LENGTH_PREFIX.size
                        self._accept(frame)
            except FrameError as error:  # the stream cannot be resynchronized: hang up
                self.stats.dropped[error.reason] += 1
                log.warning("event=connection_closed reason=%s", error.reason)
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                return

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


async def _until_peer_leaves(stream: ByteStream, connection: anyio.CancelScope) -> None:
    """Close `connection` once the peer closes its end. The peer never writes on a connection
    it accepted, so any answer (bytes or the end of the stream) means it went away: without this
    watch an idle sender would find out only by losing its next message to the dead socket."""
    with contextlib.suppress(
        OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream
    ):
        await stream.receive()
    connection.cancel()

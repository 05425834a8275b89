"""FramedConnection on real loopback sockets: framing, errors, batching and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import TaskStatus
from conftest import free_port

from raft_manager.transport.codec import LENGTH_PREFIX, FrameError
from raft_manager.transport.framed import FrameBuffer, FramedConnection, serve_framed


def _framed(*frames: bytes) -> bytes:
    return b"".join(LENGTH_PREFIX.pack(len(frame)) + frame for frame in frames)


class Received:
    """What one server-side connection was handed: bursts of frames, then how it closed."""

    def __init__(self) -> None:
        self.bursts: list[list[bytes]] = []
        self.closed_with: list[Exception | None] = []

    @property
    def frames(self) -> list[bytes]:
        return [frame for burst in self.bursts for frame in burst]

    async def wait(self, predicate: object, timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate():  # type: ignore[operator]
                await anyio.sleep(0.002)


@asynccontextmanager
async def server(
    max_frame_bytes: int = 1024, **options: object
) -> AsyncIterator[tuple[int, Received, list[FramedConnection]]]:
    received = Received()
    links: list[FramedConnection] = []

    def accept() -> FramedConnection:
        link = FramedConnection(
            max_frame_bytes,
            received.bursts.append,
            received.closed_with.append,
            **options,  # type: ignore[arg-type]
        )
        links.append(link)
        return link

    listener = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], received, links
    finally:
        listener.close()
        for link in links:
            link.abort()


async def _raw(port: int, payload: bytes, close: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(payload)
    if close:
        sock.close()
    return sock


def test_a_buffer_hands_out_whole_frames_however_the_bytes_arrive() -> None:
    buffer = FrameBuffer(100)
    stream = _framed(b"one", b"", b"three" * 10)
    out = []
    for at in range(0, len(stream), 3):  # three bytes at a time
        out.extend(buffer.feed(stream[at : at + 3]))
    assert out == [b"one", b"", b"three" * 10] and len(buffer) == 0
    assert buffer.feed(_framed(b"a", b"b") + LENGTH_PREFIX.pack(5) + b"xy") == [b"a", b"b"]
    assert len(buffer) == 6  # the prefix and two bytes of the third
    with pytest.raises(FrameError, match="oversized"):
        FrameBuffer(10).feed(LENGTH_PREFIX.pack(11))


async def test_frames_arrive_in_order_and_a_pipelined_burst_in_few_calls() -> None:
    async with server() as (port, received, _):
        frames = [f"frame {n}".encode() for n in range(500)]
        await _raw(port, _framed(*frames))
        await received.wait(lambda: len(received.frames) == 500 and received.closed_with)
        assert received.frames == frames
        assert len(received.bursts) < 50  # read a buffer at a time, not a frame at a time
        assert received.closed_with == [None]  # a clean end between frames


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (LENGTH_PREFIX.pack(1 << 30), "oversized"),
        (_framed(b"whole") + b"\x00\x00\x00\x09ab", "truncated"),
    ],
)
async def test_a_stream_that_cannot_be_resynchronized_is_closed_with_its_reason(
    payload: bytes, reason: str
) -> None:
    async with server() as (port, received, _):
        await _raw(port, payload)
        await received.wait(lambda: received.closed_with)
        [error] = received.closed_with
        assert isinstance(error, FrameError) and error.reason == reason
        assert received.frames == ([b"whole"] if reason == "truncated" else [])


async def test_frames_put_in_one_turn_reach_the_peer_in_order() -> None:
    async with server() as (port, received, _):
        replies: list[list[bytes]] = []
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(
            lambda: FramedConnection(1024, replies.append), "127.0.0.1", port
        )
        for n in range(300):
            assert link.put(f"request {n}".encode())
        await received.wait(lambda: len(received.frames) == 300)
        assert received.frames == [f"request {n}".encode() for n in range(300)]
        link.abort()
        await received.wait(lambda: received.closed_with)
        assert not link.connected and not link.put(b"late")  # a closed link takes nothing


async def test_capacity_bounds_what_waits_while_the_peer_does_not_read() -> None:
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(
        lambda: FramedConnection(1 << 20, list, capacity=8), *silent.getsockname()
    )
    accepted, _ = silent.accept()  # accepted, never read
    big = bytes(200_000)
    taken = 0
    for _ in range(200):  # bounded: the kernel's buffers fill long before this
        if link.put(big):
            taken += 1
        await anyio.sleep(0)
    assert 8 <= taken < 200  # once the kernel is full, at most 8 frames wait
    link.abort()
    accepted.close()
    silent.close()


async def test_with_backpressure_a_server_stops_reading_a_client_that_does_not_read() -> None:
    answer = bytes(100_000)
    seen: list[int] = []

    def accept() -> FramedConnection:
        def requests(frames: list[bytes]) -> None:
            for _ in frames:
                seen.append(1)
                link.put(answer)

        link = FramedConnection(1024, requests, backpressure=True)
        return link

    listener = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    client.setblocking(False)
    request = _framed(b"give me 100 KB")
    sent = 0
    for _ in range(2000):  # the client sends and never reads
        try:
            client.send(request)
            sent += 1
        except BlockingIOError:
            await anyio.sleep(0.001)
        else:
            await anyio.sleep(0)
    await anyio.sleep(0.2)
    assert len(seen) < sent  # the server stopped taking requests it could not answer
    client.close()
    listener.close()


async def test_a_server_closes_every_connection_it_accepted_when_it_stops() -> None:
    accepted: list[FramedConnection] = []

    def accept() -> FramedConnection:
        accepted.append(FramedConnection(1024, list))
        return accepted[-1]

    ports: list[int] = []
    async with anyio.create_task_group() as group:
        await group.start(_serve, accept, ports)
        clients = [socket.create_connection(("127.0.0.1", ports[0])) for _ in range(3)]
        with anyio.fail_after(5):
            while len(accepted) < 3:
                await anyio.sleep(0.002)
        group.cancel_scope.cancel()
    assert all(link.closed.done() or not link.connected for link in accepted)
    for client in clients:
        client.settimeout(5)
        assert client.recv(1) == b""  # the node hung up
        client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports[0]), timeout=1)


async def _serve(accept: object, ports: list[int], *, task_status: TaskStatus[None]) -> None:
    def started(port: int) -> None:
        ports.append(port)
        task_status.started()

    await serve_framed(f"127.0.0.1:{free_port()}", accept, started)  # type: ignore[arg-type]


async def test_backpressure_holds_when_a_drain_fills_the_kernel_again() -> None:
    # A client that pipelines requests and now and then reads a lot, whose answers come later
    # (as a commit's do): each drain writes everything held at once, which can fill the
    # kernel's buffer again; reading must then stay paused (it was resumed regardless, and the
    # answers piled up without bound while the connection went on reading).
    answer = bytes(50_000)
    links: list[FramedConnection] = []
    taken_while_held = 0
    loop = asyncio.get_running_loop()

    def accept() -> FramedConnection:
        def requests(frames: list[bytes]) -> None:
            nonlocal taken_while_held
            if link.writes_held:
                taken_while_held += len(frames)
            for _ in frames:
                loop.call_later(0.001, link.put, answer)

        link = FramedConnection(1024, requests, backpressure=True)
        links.append(link)
        return link

    listener = await loop.create_server(accept, "127.0.0.1", 0)
    client = socket.create_connection(listener.sockets[0].getsockname())
    client.setblocking(False)
    request = _framed(b"more")
    for step in range(600):  # bounded
        with contextlib.suppress(BlockingIOError):
            client.send(request * 20)
        if step % 20 == 0:
            for _ in range(8):
                with contextlib.suppress(BlockingIOError):
                    client.recv(1 << 20)
        await anyio.sleep(0.0005)
    [link] = links
    assert link.writes_held and link.transport is not None
    assert taken_while_held == 0 and not link.transport.is_reading()
    client.close()
    listener.close()
    link.abort()


async def test_an_error_in_a_handler_stops_the_server_instead_of_being_logged() -> None:
    # A handler that raises (a bug: the node's state may be half-changed) must end the node, as
    # an exception in a task does, not be logged by the event loop while the node serves on.
    def broken(frames: list[bytes]) -> None:
        raise RuntimeError("a bug in the handler")

    ports: list[int] = []
    with pytest.raises(BaseExceptionGroup) as raised:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await group.start(_serve, lambda: FramedConnection(1024, broken), ports)
                await _raw(ports[0], _framed(b"boom"))
                await anyio.sleep(5)  # the server fails long before
    assert raised.group_contains(RuntimeError, match="a bug in the handler")


async def test_a_tls_handshake_that_never_comes_is_refused_after_its_time() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    async with server(tls=(context, True, None), handshake_seconds=0.2) as (port, received, _):
        with socket.create_connection(("127.0.0.1", port)):  # connects, says nothing
            await received.wait(lambda: received.closed_with, timeout=5)
    [error] = received.closed_with
    assert isinstance(error, FrameError) and error.reason == "tls-handshake"
    assert received.frames == []

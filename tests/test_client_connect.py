"""RaftClient's connections: one per node however many calls need it at once, and none that
holds a call past its attempt's deadline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import anyio

from raft_manager.client import RaftClient
from raft_manager.transport.client_protocol import MAX_REQUEST_BYTES, decode_request, ok_response
from raft_manager.transport.framed import FramedConnection


def _node() -> FramedConnection:  # answers every request at once
    def answer(frames: list[bytes]) -> None:
        for frame in frames:
            link.put(ok_response(decode_request(frame).id, {"ok": True}))

    link = FramedConnection(MAX_REQUEST_BYTES, answer)
    return link


async def test_a_burst_of_first_calls_shares_one_connection() -> None:
    accepted = 0

    def node() -> FramedConnection:
        nonlocal accepted
        accepted += 1
        return _node()

    server = await asyncio.get_running_loop().create_server(node, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with RaftClient([f"127.0.0.1:{port}"], timeout=5.0) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as burst:
                for _ in range(200):
                    burst.start_soon(client.command, {"op": "memory.put", "key": "k"})
    server.close()
    assert accepted == 1


async def test_a_call_waiting_for_another_calls_connect_gives_up_at_its_own_deadline() -> None:
    # A listener that never accepts, its queue full: a new connection to it hangs (its SYNs
    # are dropped), like one to a host cut off by the network.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    filler = [socket.socket() for _ in range(4)]
    for sock in filler:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(silent.getsockname())
    hanging = f"127.0.0.1:{silent.getsockname()[1]}"
    server = await asyncio.get_running_loop().create_server(_node, "127.0.0.1", 0)
    good = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = RaftClient([hanging, good], timeout=6.0, attempt_timeout=0.5)
    async with client, anyio.create_task_group() as group:
        group.start_soon(_status_ignoring_failure, client, hanging)  # holds the connect
        await anyio.sleep(0.1)
        started = time.monotonic()
        await client.command({"op": "memory.put", "key": "k"})
        took = time.monotonic() - started
        group.cancel_scope.cancel()
    server.close()
    for sock in (*filler, silent):
        sock.close()
    assert took < 3.0, took  # one 0.5 s attempt, not the other call's 6 s connect


async def _status_ignoring_failure(client: RaftClient, address: str) -> None:
    with contextlib.suppress(Exception):
        await client.status(address)

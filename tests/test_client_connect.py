"""RaftClient opens one connection per node, however many calls need it at once."""

from __future__ import annotations

import asyncio

import anyio

from raft_manager.client import RaftClient
from raft_manager.transport.client_protocol import MAX_REQUEST_BYTES, decode_request, ok_response
from raft_manager.transport.framed import FramedConnection


async def test_a_burst_of_first_calls_shares_one_connection() -> None:
    accepted = 0

    def node() -> FramedConnection:  # answers every command at once
        nonlocal accepted
        accepted += 1

        def answer(frames: list[bytes]) -> None:
            for frame in frames:
                link.put(ok_response(decode_request(frame).id, {"ok": True}))

        link = FramedConnection(MAX_REQUEST_BYTES, answer)
        return link

    server = await asyncio.get_running_loop().create_server(node, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with RaftClient([f"127.0.0.1:{port}"], timeout=5.0) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as burst:
                for _ in range(200):
                    burst.start_soon(client.command, {"op": "memory.put", "key": "k"})
    server.close()
    assert accepted == 1

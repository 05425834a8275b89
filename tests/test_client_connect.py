"""RaftClient opens one connection per node, however many calls need it at once."""

from __future__ import annotations

import anyio
from anyio.abc import SocketStream

from raft_manager.client import RaftClient
from raft_manager.transport.client_protocol import MAX_REQUEST_BYTES, decode_request, ok_response
from raft_manager.transport.framing import FrameReader, FrameWriter


async def test_a_burst_of_first_calls_shares_one_connection() -> None:
    accepted = 0

    async def node(stream: SocketStream) -> None:  # answers every command at once
        nonlocal accepted
        accepted += 1
        reader, writer = FrameReader(stream, MAX_REQUEST_BYTES), FrameWriter(stream)
        async with stream, anyio.create_task_group() as group:
            group.start_soon(writer.run)
            while (frames := await reader.next_frames()) is not None:
                for frame in frames:
                    writer.put(ok_response(decode_request(frame).id, {"ok": True}))
            group.cancel_scope.cancel()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, node)
        async with RaftClient([f"127.0.0.1:{port}"], timeout=5.0) as client:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as burst:
                    for _ in range(200):
                        burst.start_soon(client.command, {"op": "memory.put", "key": "k"})
        group.cancel_scope.cancel()
    assert accepted == 1

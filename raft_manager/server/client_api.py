"""The client endpoint of a node: the client protocol served on the node's client address.

Theory of operation: each connection is read frame by frame; every request runs in its own task
(a client may pipeline), and responses are written back under a per-connection lock, tagged with
the request's id. Proposals and reads go to the runtime; a node that is not the leader answers
`not_leader` with the leader's client address, so the client can follow the redirect. A request
that does not decode is answered `bad_request` (id 0) and the connection stays up; a frame the
stream cannot recover from closes the connection. Nothing a client sends can stop the node.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskGroup, TaskStatus

from raft_manager.core import NotLeader, ProposalDropped, RaftError
from raft_manager.transport.base import parse_address
from raft_manager.transport.client_protocol import (
    MAX_REQUEST_BYTES,
    Request,
    decode_request,
    error_response,
    ok_response,
)
from raft_manager.transport.codec import FrameError
from raft_manager.transport.framing import FrameReader, with_length

from .runtime import NodeRuntime, ProposalLost

log = logging.getLogger("raft_manager.server")


class ClientServer:
    def __init__(
        self,
        runtime: NodeRuntime,
        listen: str,
        client_addresses: dict[str, str],
        read_key: Callable[[str], Any],
        *,
        timeout: float = 5.0,
    ) -> None:
        self.runtime = runtime
        self.listen = listen
        self.client_addresses = client_addresses
        self.read_key = read_key
        self.timeout = timeout
        self.port = 0

    async def serve(
        self, task_group: TaskGroup, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        host, port = parse_address(self.listen)
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        async with listener:
            await listener.serve(self._connection, task_group=task_group)

    async def _connection(self, stream: SocketStream) -> None:
        lock = anyio.Lock()

        async def reply(frame: bytes) -> None:
            async with lock:
                await stream.send(with_length(frame))

        async def answer(request: Request) -> None:
            response = await self._handle(request)
            # If the client went away, its request may still have taken effect: nothing to do.
            with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await reply(response)

        async with stream, anyio.create_task_group() as requests:
            reader = FrameReader(stream, MAX_REQUEST_BYTES)
            try:
                while (frame := await reader.next_frame()) is not None:
                    try:
                        request = decode_request(frame)
                    except FrameError as error:
                        await reply(error_response(0, "bad_request", str(error)))
                        continue
                    requests.start_soon(answer, request)
            except FrameError as error:
                log.warning("event=client_connection_closed reason=%s", error.reason)
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass

    async def _handle(self, request: Request) -> bytes:
        runtime = self.runtime
        try:
            if request.op == "propose":
                result = await runtime.propose(request.data, self.timeout)
            elif request.op == "read":
                await runtime.read_barrier(self.timeout)
                result = self.read_key(request.key)
            elif request.op == "transfer":
                result = await runtime.transfer(request.key or None, self.timeout)
            else:
                result = {**runtime.status(), "pid": os.getpid()}
            return ok_response(request.id, result)
        except NotLeader as error:
            address = self.client_addresses.get(error.leader or "")
            return error_response(request.id, "not_leader", str(error), error.leader, address)
        except ProposalLost as error:
            return error_response(request.id, "lost", str(error))
        except ProposalDropped as error:
            return error_response(request.id, "dropped", str(error))
        except TimeoutError:
            return error_response(request.id, "timeout", f"no answer within {self.timeout} s")
        except RaftError as error:
            return error_response(request.id, "unavailable", str(error))

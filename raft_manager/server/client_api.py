"""The client endpoint of a node: the client protocol served on the node's client address.

Theory of operation: each connection is a FramedConnection (transport/framed.py) and hands
over a burst of frames at a time (a client may pipeline). The commands in a burst are validated
and stamped, with one clock reading, by the ledger gateway (an invalid one is answered
`invalid_command` at once) and go to the runtime as one batch, each with a callback that writes
its response; queries, status and transfers run in a task each. Responses, tagged with the
request's id, are put on the connection, which writes a burst of them as one buffer and stops
reading from a client that does not read its answers. A node that is not the leader answers
`not_leader` with the leader's client address, so the client can follow the redirect. `log` and
`digest` are answered from this node's own log and notes, whatever its role (they serve
`raft-manager verify`). A request that does not decode is answered `bad_request` (with its id
when that was readable, else 0) and the connection stays up; a frame the stream cannot recover
from closes the connection. Nothing a client sends can stop the node.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from raft_manager.core import NotLeader, ProposalDropped, RaftError, TransferRejected
from raft_manager.core.errors import ConfChangeRejected
from raft_manager.ledger import LedgerError
from raft_manager.transport.client_protocol import (
    MAX_REQUEST_BYTES,
    BadRequest,
    Request,
    decode_request,
    error_response,
    ok_response,
)
from raft_manager.transport.codec import FrameError
from raft_manager.transport.framed import FramedConnection, serve_framed

from .gateway import LedgerGateway
from .members import Membership
from .runtime import NodeRuntime, ProposalLost

log = logging.getLogger("raft_manager.server")


class ClientServer:
    def __init__(
        self,
        runtime: NodeRuntime,
        gateway: LedgerGateway,
        membership: Membership,
        listen: str,
        client_addresses: dict[str, str],
        *,
        timeout: float = 5.0,
    ) -> None:
        self.runtime = runtime
        self.gateway = gateway
        self.membership = membership
        self.listen = listen
        self.client_addresses = client_addresses
        self.timeout = timeout
        self.port = 0

    async def serve(
        self, task_group: TaskGroup, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        def started(port: int) -> None:
            self.port = port
            task_status.started()

        await serve_framed(self.listen, partial(self._connection, task_group), started)

    def _connection(self, tasks: TaskGroup) -> FramedConnection:
        link: FramedConnection

        def requests(frames: list[bytes]) -> None:
            commands = []
            for frame in frames:
                try:
                    request = decode_request(frame)
                except BadRequest as error:
                    link.put(error_response(error.request_id, "bad_request", str(error)))
                    continue
                if request.op == "command":
                    commands.append(request)
                else:
                    tasks.start_soon(self._answer, request, link)
            if commands:
                self._propose(commands, link)

        def closed(error: Exception | None) -> None:
            # The client is gone: nobody reads the answers still to come. What its requests
            # started in the runtime goes on (a proposal may still commit).
            if isinstance(error, FrameError):
                log.warning("event=client_connection_closed reason=%s", error.reason)

        link = FramedConnection(
            MAX_REQUEST_BYTES,
            requests,
            closed,
            backpressure=True,
            pending_writes=self.runtime.pending_writes,
        )
        return link

    def _propose(self, requests: list[Request], link: FramedConnection) -> None:
        entries, answers = [], []
        for request, entry in zip(requests, self.gateway.entries_for(requests), strict=True):
            if isinstance(entry, LedgerError):
                link.put(error_response(request.id, entry.code, entry.message))
                continue
            entries.append(entry)
            answers.append(partial(self._reply, link, request.id))
        if not entries:
            return
        try:
            self.runtime.submit(entries, answers, self.timeout)
        except RaftError as error:
            for answer in answers:
                answer(None, error)

    def _reply(
        self, link: FramedConnection, request_id: int, result: Any, error: Exception | None
    ) -> None:
        link.put(self._response(request_id, result, error))

    async def _answer(self, request: Request, link: FramedConnection) -> None:
        runtime = self.runtime
        try:
            if request.op == "query":
                result = await self.gateway.query(request.body, request.stale, self.timeout)
            elif request.op == "members":
                result = await self.membership.handle(request.body, self.timeout)
            elif request.op == "transfer":
                result = await runtime.transfer(request.target or None, self.timeout)
            elif request.op == "log":
                result = runtime.log_page(request.start, request.count)
            elif request.op == "checkpoint":
                result = await runtime.checkpoint(self.timeout)
            elif request.op == "digest":
                result = runtime.digest_at(request.index)
            else:
                members = self.membership.members()
                result = {**runtime.status(request.digest), **members, "pid": os.getpid()}
        except LedgerError as error:
            link.put(error_response(request.id, error.code, error.message))
            return
        except (RaftError, TimeoutError) as error:
            self._reply(link, request.id, None, error)
        else:
            self._reply(link, request.id, result, None)

    def _response(self, request_id: int, result: Any, error: Exception | None) -> bytes:
        if error is None:
            return ok_response(request_id, result)
        if isinstance(error, NotLeader):
            address = self.client_addresses.get(error.leader or "")
            return error_response(request_id, "not_leader", str(error), error.leader, address)
        if isinstance(error, ConfChangeRejected):
            return error_response(request_id, "conf_rejected", str(error))
        if isinstance(error, TransferRejected):
            return error_response(request_id, "transfer_rejected", str(error))
        if isinstance(error, ProposalLost):
            return error_response(request_id, "lost", str(error))
        if isinstance(error, ProposalDropped):
            return error_response(request_id, "dropped", str(error))
        if isinstance(error, TimeoutError):
            return error_response(request_id, "timeout", f"no answer within {self.timeout} s")
        return error_response(request_id, "unavailable", str(error))

"""An async client for a raft-manager cluster, and a small sync wrapper.

Theory of operation: the client knows the nodes' client addresses and remembers which one led
last. A call goes there (or to the first address), over one pipelined connection per node whose
responses are matched to requests by id; a node gets `attempt_timeout` to answer. `not_leader`
answers are followed to the leader they name; a connection failure, no answer in time,
`timeout`, `dropped`, `lost` or `unavailable` moves on to the next node after a backoff
(exponential, with full jitter: up to 0.5 s when the cluster says it is overloaded, up to 50 ms
while looking for a leader), until the call's deadline passes, when TimeoutError is raised.
Every command carries the client's session id, a request number (the same on every retry) and
the lowest number still awaiting its answer, so the ledger applies each command once however
often it is retried. Other refusals, and a command or query the ledger refused by its rules
(`{"ok": false, "error": code}`), raise ClientError with the code.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import uuid
from collections.abc import Sequence
from functools import partial
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel

from raft_manager.transport.base import parse_address
from raft_manager.transport.client_protocol import (
    MAX_SESSION_CHARS,
    Request,
    decode_response,
    encode_request,
)
from raft_manager.transport.codec import FrameError
from raft_manager.transport.framed import FramedConnection

RETRYABLE = ("timeout", "dropped", "lost", "unavailable")
OVERLOADED = ("timeout", "dropped", "lost")  # the cluster is busy: back off further
BACKOFF_START = 0.01
BACKOFF_MAX = 0.5
# While the client looks for a leader (none answers, or none is known yet) a retry is one cheap
# round trip, and the sooner it finds the new leader the shorter a failover looks to it.
LEADER_SEARCH_BACKOFF_MAX = 0.05
MAX_RESPONSE_BYTES = 64 << 20
SWEEP_SECONDS = 0.02  # how late past its deadline a request may be failed


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class _Connection:
    """One pipelined connection to one node, driven by the event loop's callbacks (see
    transport/framed.py): a request is written as it is made (a burst made in one turn of the
    loop goes out as one write), each response resolves the future of the request whose id it
    echoes, and one sweeper task enforces deadlines instead of a cancel scope per request."""

    def __init__(self) -> None:
        self.waiting: dict[int, tuple[float, asyncio.Future[dict[str, Any] | None]]] = {}
        self.link = FramedConnection(MAX_RESPONSE_BYTES, self._resolve, self._fail_all)
        self.retired = False  # replaced after a timeout: closed once nothing waits on it

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        connection = cls()
        await asyncio.get_running_loop().create_connection(lambda: connection.link, host, port)
        return connection

    @property
    def broken(self) -> bool:
        return not self.link.connected

    def _resolve(self, frames: list[bytes]) -> None:
        try:
            responses = [decode_response(frame) for frame in frames]
        except FrameError as error:
            self.link.abort(error)
            return
        for response in responses:
            waiter = self.waiting.pop(response["id"], None)
            if waiter is not None and not waiter[1].done():
                waiter[1].set_result(response)

    def _fail_all(self, error: Exception | None) -> None:
        """The connection closed: wake every caller: they find no response and move on."""
        for _, future in self.waiting.values():
            if not future.done():
                future.set_result(None)
        self.waiting.clear()

    async def sweep(self) -> None:
        """Fail the requests whose deadline passed, until the connection closes or is retired
        with nothing waiting on it; the connection is closed on the way out (also when the
        client closes and cancels this task)."""
        try:
            while not self.link.closed.done() and not (self.retired and not self.waiting):
                await anyio.sleep(SWEEP_SECONDS)
                now = time.monotonic()
                late = [key for key, (deadline, _) in self.waiting.items() if deadline <= now]
                for request_id in late:
                    _, future = self.waiting.pop(request_id)
                    if not future.done():
                        future.set_exception(TimeoutError("no response before the deadline"))
        finally:
            self.link.abort()

    async def call(self, request: Request, deadline: float) -> dict[str, Any] | None:
        """The response, or None if the connection broke first; TimeoutError at `deadline`
        (on the time.monotonic() clock)."""
        if self.broken:
            return None
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self.waiting[request.id] = (deadline, future)
        self.link.put(encode_request(request))
        try:
            return await future
        finally:
            self.waiting.pop(request.id, None)


class _InFlight:
    """The request numbers still awaiting an answer; `lowest` is the session's ack. Numbers are
    added in increasing order and removed in any order (a heap with lazy removal)."""

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._removed: set[int] = set()

    def add(self, seq: int) -> None:
        heapq.heappush(self._heap, seq)

    def remove(self, seq: int) -> None:
        self._removed.add(seq)
        heap = self._heap
        while heap and heap[0] in self._removed:
            self._removed.discard(heapq.heappop(heap))

    def lowest(self) -> int:
        return self._heap[0]


class RaftClient:
    """Use as `async with RaftClient(addresses) as client: await client.command({...})`."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout: float = 5.0,
        attempt_timeout: float = 1.0,
        session: str | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("give at least one node address")
        for address in addresses:
            parse_address(address)
        self.addresses = list(addresses)
        self.timeout = timeout
        # One node gets this long to answer before the next is tried: a stopped process whose
        # kernel still accepts connections must not eat the whole deadline.
        self.attempt_timeout = attempt_timeout
        self.session = session or uuid.uuid4().hex
        if len(self.session) > MAX_SESSION_CHARS:
            raise ValueError(f"a session id is at most {MAX_SESSION_CHARS} characters")
        self._seq = itertools.count(1)
        self._unanswered = _InFlight()
        self._ids = itertools.count(1)
        self._leader_address: str | None = None
        self._connections: dict[str, _Connection] = {}
        self._connecting: dict[str, anyio.Lock] = {}  # held while a node's connection opens
        self._group: TaskGroup | None = None
        self._jitter = random.Random()

    async def __aenter__(self) -> RaftClient:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._group is not None
        try:
            for connection in self._connections.values():
                connection.link.abort()
        finally:  # exited even when cancelled while closing, or its scope is left dangling
            self._group.cancel_scope.cancel()
            await self._group.__aexit__(kind, error, trace)

    async def command(self, body: dict[str, Any] | BaseModel) -> dict[str, Any]:
        """Replicate a ledger command (a dict or a model from raft_manager.ledger.commands);
        returns the ledger's result. ClientError when the ledger refuses it."""
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json")
        seq = next(self._seq)
        self._unanswered.add(seq)
        try:
            ack = self._unanswered.lowest()
            result = await self._call("command", body=body, session=self.session, seq=seq, ack=ack)
        finally:
            self._unanswered.remove(seq)
        return _accepted(result)

    async def query(
        self, body: dict[str, Any] | BaseModel, *, stale: bool = False
    ) -> dict[str, Any]:
        """A ledger query: linearizable, or answered by any node's local state when `stale`."""
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json")
        return _accepted(await self._call("query", body=body, stale=stale))

    async def members(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """`{"members": [...]}` as the leader sees them, after the change in `body` if one is
        given (see raft_manager/server/members.py); ClientError("conf_rejected") if it cannot
        be made."""
        result: dict[str, Any] = await self._call("members", body=body or {"kind": "list"})
        return result

    async def transfer(self, target: str | None = None) -> dict[str, Any]:
        """Leadership transfer (to the most up-to-date follower when no target is named)."""
        result: dict[str, Any] = await self._call("transfer", target=target or "")
        return result

    async def checkpoint(self) -> dict[str, Any]:
        """Have the leader propose a checkpoint; `{"index", "term", "digest"}` once it is
        applied there (each node notes its own digest at that index: see `digest`)."""
        result: dict[str, Any] = await self._call("checkpoint")
        return result

    async def status(self, address: str, *, digest: bool = False) -> dict[str, Any]:
        """One node's own view (no redirect); with `digest`, its state digest too
        (`state_digest`: a hash of a full snapshot of its state, so ask only when needed)."""
        return await self._ask(address, Request(next(self._ids), "status", digest=digest))

    async def log(self, address: str, start: int, count: int) -> dict[str, Any]:
        """One node's log bounds and its committed entries in [start, start + count) (at most
        LOG_PAGE_MAX), as [index, term, type, crc32c] (no redirect)."""
        return await self._ask(address, Request(next(self._ids), "log", start=start, count=count))

    async def digest(self, address: str, index: int) -> dict[str, Any]:
        """`{"index", "digest", "applied_index"}`: the state digest one node noted at
        checkpoint `index` (None when it has none, yet or at all)."""
        return await self._ask(address, Request(next(self._ids), "digest", index=index))

    async def local_query(self, address: str, body: dict[str, Any] | BaseModel) -> dict[str, Any]:
        """One node's answer to a ledger query from its own state: a stale read, whatever its
        role (no redirect); ClientError as for `query`, or "unavailable"."""
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json")
        request = Request(next(self._ids), "query", body=body, stale=True)
        return _accepted(await self._ask(address, request))

    async def _ask(self, address: str, request: Request) -> dict[str, Any]:
        """One node's own answer: ClientError("unavailable") if it does not answer in time,
        ClientError(code) if it refuses."""
        deadline = time.monotonic() + self.timeout
        response = await self._send(address, request, deadline)
        if response is None:
            raise ClientError("unavailable", f"{address} did not answer")
        if not response["ok"]:
            raise ClientError(response["code"], response["error"])
        result: dict[str, Any] = response["result"]
        return result

    async def _connect(self, address: str, deadline: float) -> _Connection:
        """The node's connection, opened by the first call that needs it while the calls made
        meanwhile wait for it (not one connection each, left open: a burst of first calls)."""
        connection = self._connections.get(address)
        if connection is None or connection.broken:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                async with self._connecting.setdefault(address, anyio.Lock()):
                    connection = self._connections.get(address)
                    if connection is None or connection.broken:
                        connection = await self._open(address)
        return connection

    async def _open(self, address: str) -> _Connection:
        assert self._group is not None, "use RaftClient as an async context manager"
        connection = await _Connection.open(*parse_address(address))
        self._connections[address] = connection
        self._group.start_soon(connection.sweep)
        return connection

    async def _send(self, address: str, request: Request, deadline: float) -> dict[str, Any] | None:
        connection = None
        try:
            connection = await self._connect(address, deadline)
            return await connection.call(request, deadline)
        except (OSError, TimeoutError):  # refused, reset, or no answer in time
            if connection is not None and self._connections.get(address) is connection:
                del self._connections[address]  # a new call opens a new one
                connection.retired = True
            return None

    async def _call(self, op: str, **fields: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        targets = itertools.cycle(self.addresses)
        target = self._leader_address or next(targets)
        backoff = BACKOFF_START
        last_problem = "no node answered"
        while (remaining := deadline - (now := time.monotonic())) > 0:
            request = Request(next(self._ids), op, **fields)
            response = await self._send(target, request, min(deadline, now + self.attempt_timeout))
            if response is not None and response["ok"]:
                self._leader_address = target
                return response["result"]
            if response is None:
                last_problem, target = f"{target} did not answer", next(targets)
            elif response["code"] == "not_leader":
                last_problem = response["error"]
                target = response.get("leader_address") or next(targets)
                if response.get("leader_address"):
                    continue  # follow the redirect at once
            elif response["code"] in RETRYABLE:
                last_problem, target = response["error"], next(targets)
            else:
                raise ClientError(response["code"], response["error"])
            busy = response is not None and response["code"] in OVERLOADED
            wait = backoff if busy else min(backoff, LEADER_SEARCH_BACKOFF_MAX)
            await anyio.sleep(min(wait * self._jitter.random(), max(remaining, 0)))
            backoff = min(backoff * 2, BACKOFF_MAX)
        raise TimeoutError(f"{op} gave no answer within {self.timeout} s: {last_problem}")


def _accepted(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise ClientError("bad_response", f"expected a map, got {type(result).__name__}")
    if result.get("ok") is False:
        raise ClientError(str(result.get("error")), str(result.get("message")))
    return result


class SyncRaftClient:
    """The same calls, blocking, for scripts: one RaftClient on an event loop in a thread.

    Use as `with SyncRaftClient(addresses) as client: client.command({...})`.
    """

    def __init__(self, addresses: Sequence[str], *, timeout: float = 5.0) -> None:
        self._portal_context = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_context.__enter__()
        self._client_context = self._portal.wrap_async_context_manager(
            RaftClient(addresses, timeout=timeout)
        )
        self._client = self._client_context.__enter__()

    def __enter__(self) -> SyncRaftClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client_context.__exit__(None, None, None)
        self._portal_context.__exit__(None, None, None)

    def command(self, body: dict[str, Any] | BaseModel) -> dict[str, Any]:
        return self._portal.call(self._client.command, body)

    def query(self, body: dict[str, Any] | BaseModel, *, stale: bool = False) -> dict[str, Any]:
        return self._portal.call(partial(self._client.query, body, stale=stale))

    def status(self, address: str) -> dict[str, Any]:
        return self._portal.call(self._client.status, address)

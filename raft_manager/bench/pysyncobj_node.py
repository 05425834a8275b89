"""A PySyncObj node that speaks raft-manager's client protocol, for the bench's comparison.

Theory of operation: the process runs one PySyncObj `SyncObj` with its defaults (the log in
memory, no fsync; its own TCP transport and ticking thread) but for `appendEntriesUseBatch` off,
PySyncObj's documented setting for request latency (with batching on, a write waits for the
next 100 ms append period), and one replicated dict, and serves
`command` (only `memory.put`: key, value) and `status` on its client address in raft-manager's
client protocol (transport/client_protocol.py), so the bench drives it with the same client as
raft-manager. On the leader a put becomes an asynchronous replicated call; its callback runs on
PySyncObj's thread and hands the answer to the event loop, one wake-up per burst of answers. A
follower answers `not_leader` with the leader's client address, or `unavailable` when it knows
no leader (the client retries); PySyncObj's failures map to the codes the client retries.

Usage: python -m raft_manager.bench.pysyncobj_node --id n1 --node n1=RAFT=CLIENT
--node n2=RAFT=CLIENT ... (every node, this one included; RAFT and CLIENT are HOST:PORT).
SIGTERM ends it at once: it keeps nothing on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any

import anyio

from raft_manager.transport.client_protocol import (
    MAX_REQUEST_BYTES,
    BadRequest,
    Request,
    decode_request,
    error_response,
    ok_response,
)
from raft_manager.transport.framed import FramedConnection, serve_framed

ROLES = {0: "follower", 1: "candidate", 2: "leader"}  # PySyncObj's _RAFT_STATE
# PySyncObj's FAIL_REASON -> the client protocol's code (all but bad_request are retried)
FAILURES = {
    1: "dropped",  # QUEUE_FULL
    2: "unavailable",  # MISSING_LEADER
    3: "lost",  # DISCARDED
    4: "lost",  # NOT_LEADER
    5: "lost",  # LEADER_CHANGED
    6: "bad_request",  # REQUEST_DENIED
    7: "lost",  # UNKNOWN_OUTCOME
}


class Replies:
    """Answers produced on PySyncObj's thread, written by the event loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[FramedConnection, bytes]] = []

    def add(self, link: FramedConnection, frame: bytes) -> None:
        """From any thread."""
        with self._lock:
            self._pending.append((link, frame))
            first = len(self._pending) == 1
        if first:
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for link, frame in pending:
            link.put(frame)


class Node:
    """The client endpoint in front of one SyncObj."""

    def __init__(self, name: str, nodes: dict[str, tuple[str, str]]) -> None:
        pysyncobj = importlib.import_module("pysyncobj")  # optional: the `compare` extra
        batteries = importlib.import_module("pysyncobj.batteries")
        self.name = name
        raft = {name: addresses[0] for name, addresses in nodes.items()}
        self._names = {address: name for name, address in raft.items()}
        self._clients = {name: addresses[1] for name, addresses in nodes.items()}
        self._store = batteries.ReplDict()
        others = [address for other, address in raft.items() if other != name]
        self._raft = pysyncobj.SyncObj(
            raft[name],
            others,
            conf=pysyncobj.SyncObjConf(appendEntriesUseBatch=False),
            consumers=[self._store],
        )
        self._replies: Replies | None = None

    async def serve(self) -> None:
        self._replies = Replies(asyncio.get_running_loop())
        await serve_framed(self._clients[self.name], self._connection, lambda _port: None)

    def _connection(self) -> FramedConnection:
        def requests(frames: list[bytes]) -> None:
            for frame in frames:
                self._handle(frame, link)

        link = FramedConnection(MAX_REQUEST_BYTES, requests, backpressure=True)
        return link

    def _handle(self, frame: bytes, link: FramedConnection) -> None:
        try:
            request = decode_request(frame)
        except BadRequest as error:
            link.put(error_response(error.request_id, "bad_request", str(error)))
            return
        if request.op == "status":
            link.put(ok_response(request.id, self._status()))
        elif request.op != "command" or request.body.get("op") != "memory.put":
            link.put(error_response(request.id, "bad_request", "this node only does puts"))
        elif self._raft._isLeader():
            self._put(request, link)
        else:
            leader = self._leader()
            if leader is None:
                link.put(error_response(request.id, "unavailable", "no leader known"))
            else:
                address = self._clients[leader]
                message = f"{leader} leads"
                link.put(error_response(request.id, "not_leader", message, leader, address))

    def _put(self, request: Request, link: FramedConnection) -> None:
        replies = self._replies
        assert replies is not None

        def done(_result: Any, failure: int) -> None:  # on PySyncObj's thread
            if failure == 0:
                replies.add(link, ok_response(request.id, {"ok": True}))
            else:
                code = FAILURES.get(failure, "lost")
                replies.add(link, error_response(request.id, code, f"pysyncobj {failure}"))

        self._store.set(request.body.get("key"), request.body.get("value"), callback=done)

    def _leader(self) -> str | None:
        leader = self._raft._getLeader()
        return None if leader is None else self._names.get(leader.id)

    def _status(self) -> dict[str, Any]:
        status = self._raft.getStatus()
        return {
            "id": self.name,
            "role": ROLES.get(status["state"], "follower"),
            "term": status["raft_term"],
            "leader": self._leader(),
            "commit_index": status["commit_idx"],
            "applied_index": status["last_applied"],
            "last_index": status["log_len"],
            "pid": os.getpid(),
        }


def _parse(argv: Sequence[str] | None) -> tuple[str, dict[str, tuple[str, str]]]:
    parser = argparse.ArgumentParser(description="A PySyncObj node for raft-manager's bench.")
    parser.add_argument("--id", required=True)
    parser.add_argument("--node", action="append", required=True, help="ID=RAFT=CLIENT")
    args = parser.parse_args(argv)
    nodes: dict[str, tuple[str, str]] = {}
    for spec in args.node:
        parts = spec.split("=")
        if len(parts) != 3:
            parser.error(f"--node {spec!r}: give ID=RAFT_ADDRESS=CLIENT_ADDRESS")
        nodes[parts[0]] = (parts[1], parts[2])
    if args.id not in nodes:
        parser.error(f"--id {args.id!r} is not among the --node entries")
    return args.id, nodes


def main(argv: Sequence[str] | None = None) -> None:
    name, nodes = _parse(argv)
    node = Node(name, nodes)
    use_uvloop = importlib.util.find_spec("uvloop") is not None  # as raft-manager's nodes do
    anyio.run(node.serve, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


if __name__ == "__main__":
    main()

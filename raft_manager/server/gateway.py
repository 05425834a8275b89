"""The ledger's door on a node: validate and stamp commands, answer queries, keep time moving.

Theory of operation: a command from a client is validated here (pydantic, at the edge: an invalid
one is refused `invalid_command` and never reaches the log), then wrapped in the log envelope
with the leader's clock in milliseconds (never less than the last stamp this node gave, so one
leader's stamps never run backwards) and the client's session, request number and ack. A query
runs on the local ledger, after a ReadIndex barrier unless the client accepts a stale answer.
The clock task proposes a `clock` entry when this node leads and nothing was proposed for
`clock_interval` seconds, so leases, heartbeats, TTLs and deadlines expire on time in an idle
swarm (the ledger itself reads no clock).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio

from raft_manager.core import RaftError
from raft_manager.ledger import Ledger, LedgerError, encode_entry, parse_command, parse_query
from raft_manager.ledger.commands import Clock, Command
from raft_manager.transport.client_protocol import Request

from .runtime import NodeRuntime


class LedgerGateway:
    def __init__(self, runtime: NodeRuntime, ledger: Ledger, clock_interval: float = 1.0) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.clock_interval = clock_interval
        self._last_stamp = 0
        self._last_proposal = 0.0  # time.monotonic() of the last entry this node proposed

    def stamp(self) -> int:
        self._last_stamp = max(self._last_stamp, time.time_ns() // 1_000_000)
        self._last_proposal = time.monotonic()
        return self._last_stamp

    def entries_for(self, requests: Sequence[Request]) -> list[bytes | LedgerError]:
        """The log entry for each command of a burst, or the LedgerError("invalid_command")
        that refuses it. The valid ones share one stamp, read only if there is one: a burst
        of invalid commands proposes nothing, so it does not hold the clock entries back."""
        config, any_valid = self.ledger.config, False
        parsed: list[Command | LedgerError] = []
        for request in requests:
            try:
                parsed.append(parse_command(request.body, config))
                any_valid = True
            except LedgerError as error:
                parsed.append(error)
        ts = self.stamp() if any_valid else 0
        return [
            command
            if isinstance(command, LedgerError)
            else encode_entry(command, ts, request.session, request.seq, request.ack)
            for command, request in zip(parsed, requests, strict=True)
        ]

    async def query(self, body: dict[str, Any], stale: bool, timeout: float) -> dict[str, Any]:
        parsed = parse_query(body)  # invalid_command before any waiting
        if not stale:
            await self.runtime.read_barrier(timeout)
        try:
            return self.ledger.query(parsed)
        except LedgerError as error:
            return error.result()

    async def run_clock(self) -> None:
        def ignore(result: Any, error: Exception | None) -> None:
            pass  # a lost clock entry is harmless: the next one carries a later time

        while True:
            await anyio.sleep(self.clock_interval / 2)
            idle = time.monotonic() - self._last_proposal >= self.clock_interval
            if self.runtime.is_leader and idle:
                try:
                    entry = encode_entry(Clock(), self.stamp())
                    self.runtime.submit((entry,), (ignore,), self.clock_interval * 4)
                except RaftError:
                    pass  # lost leadership meanwhile

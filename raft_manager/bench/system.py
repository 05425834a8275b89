"""What a system under measurement offers the workloads, and the write they all measure.

Theory of operation: every system (raft-manager, PySyncObj, etcd) runs its nodes as separate
processes on loopback and offers the same small surface: its nodes, who leads now, whether it
has settled (every node up and following one leader), SIGKILL and restart of one node, and a
writer: an async context manager giving `write`, an awaitable that returns once one write of
VALUE_BYTES bytes under KEY is committed, retrying through redirects and elections like a real
client, and raising WriteFailed when it gives up (after WRITE_TIMEOUT seconds). The workloads
see nothing else, so the same measurement runs against each system.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import anyio

KEY = "bench"
VALUE_BYTES = 200
VALUE = "x" * VALUE_BYTES
WRITE_TIMEOUT = 10.0  # seconds a write may take, retries included, before it fails
SETTLE_SECONDS = 30.0  # how long a system may take to start, or to settle after a restart

Write = Callable[[], Awaitable[None]]


class BenchError(Exception):
    """A system could not be measured: it did not start, or did not settle in time."""


class WriteFailed(Exception):
    """A write was not committed within WRITE_TIMEOUT (or was refused)."""


class System(Protocol):
    name: str
    fsync: bool  # whether a write is on disk (fsync) on a majority before it is acknowledged
    setup: str  # how it is configured, in a few words, for the report

    @property
    def nodes(self) -> Sequence[str]: ...

    async def leader(self) -> str | None: ...

    async def settled(self) -> bool: ...

    def kill(self, node: str) -> None: ...

    def restart(self, node: str) -> None: ...

    def check(self) -> None:
        """BenchError if a node exited on its own."""

    def writer(self) -> AbstractAsyncContextManager[Write]: ...


async def wait_settled(system: System, seconds: float = SETTLE_SECONDS) -> None:
    """Return once `system` has settled; BenchError after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        system.check()
        if await system.settled():
            return
        await anyio.sleep(0.05)
    raise BenchError(f"{system.name} did not settle (a leader, every node up) in {seconds:.0f} s")

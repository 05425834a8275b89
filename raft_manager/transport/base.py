"""What every transport shares: the interface the runtime drives, counters, addresses, timing.

Theory of operation: a transport moves core messages between the nodes of one cluster. The
runtime starts it with `serve(task_group, deliver)` (deliver is called with each decoded inbound
message) and hands it outbound messages with `send`, which must never block: a transport keeps
a bounded queue per peer and drops (and counts) what does not fit, since Raft resends. What a
transport dropped, and why, is in its `stats`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from raft_manager.core import Message, NodeId

DEFAULT_QUEUE_MESSAGES = 4096
BACKOFF_START = 0.02
# A restarted peer is reached again at most this long after it listens (0.5-1.5 x with jitter):
# at 1.0 a follower back from a crash waited up to 0.7 s more for its leader's first message.
BACKOFF_MAX = 0.2


@dataclass(slots=True)
class TransportStats:
    sent: int = 0
    received: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by reason


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError otherwise."""
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit() or not host:
        raise ValueError(f"bad address {address!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"bad port in {address!r}")
    return host, number


Item = TypeVar("Item")


class Outbox(Generic[Item]):
    """A queue that one task drains in bursts: `put` never blocks (it returns False, keeping
    nothing, when `capacity` items wait already); `take_all` waits for at least one item and
    returns every item queued. Cheaper than a memory object stream: no checkpoint per item."""

    def __init__(self, capacity: int | None = None) -> None:
        self._items: list[Item] = []
        self._capacity = capacity
        self._nonempty = anyio.Event()

    def put(self, item: Item) -> bool:
        if self._capacity is not None and len(self._items) >= self._capacity:
            return False
        self._items.append(item)
        self._nonempty.set()
        return True

    async def take_all(self) -> list[Item]:
        while not self._items:
            await self._nonempty.wait()
            self._nonempty = anyio.Event()
        items, self._items = self._items, []
        return items


class Backoff:
    """Exponential backoff with jitter for reconnect loops: wait() sleeps longer each time,
    reset() after a success. Seeded by name so that runs are reproducible."""

    def __init__(self, name: str) -> None:
        self._jitter = random.Random(name)
        self._delay = BACKOFF_START

    def reset(self) -> None:
        self._delay = BACKOFF_START

    async def wait(self) -> None:
        await anyio.sleep(self._delay * (0.5 + self._jitter.random()))
        self._delay = min(self._delay * 2, BACKOFF_MAX)


class Transport(Protocol):
    async def serve(
        self,
        task_group: TaskGroup,
        deliver: Callable[[Message], None],
        *,
        lost: Callable[[NodeId], None] | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until `task_group` is cancelled: `deliver` each message that arrives, and tell
        `lost` of a peer whose connection, once up, went away (its process died, say), where
        the transport can tell."""

    def send(self, msg: Message) -> None: ...

    def set_peers(self, peers: dict[NodeId, str]) -> None:
        """The members changed: reach exactly these peers (id -> address) from now on; what was
        queued for a peer no longer listed is dropped and its connection closed."""

    @property
    def stats(self) -> TransportStats: ...

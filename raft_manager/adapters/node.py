"""What a peer adapter works with: its node, the bus, a client of the cluster; and the loop that
runs an adapter's periodic work.

Theory of operation: the adapters of one node share one `AdapterNode`: the node's parts (its
id, config, key ring, metrics and status, handed over by server/node.py), the node's bus
(identity `raft-manager.<node id>`) and one RaftClient that knows every node's client address,
this node's first. Requests are carried out through that client, so whichever node's consumer
took a request, its commands reach the leader (the client follows redirects) and are applied
once (the client's session). A request must be answered within the bus's handler timeout or it
is redelivered and run again, so each request works within `budget_s` (four fifths of that
timeout) and answers "timed out" when that is not enough.

`repeat` runs an adapter's periodic step until cancelled: a step that fails because Redis or
the cluster is away, or no key is valid to sign with, is logged and tried again next period.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from raft_manager.client import ClientError, RaftClient, SwarmClient
from raft_manager.server.config import AdaptersConfig
from raft_manager.server.node import NodeParts

from .bus import Bus
from .errors import BusError
from .signing import SigningError

log = logging.getLogger("raft_manager.adapters")

BUDGET_SHARE = 0.8  # of handler_timeout_s: the time a request may take
PASSING = (BusError, SigningError, ClientError, TimeoutError, OSError)  # a step fails, retried


def budget_s(settings: AdaptersConfig) -> float:
    """How long a request may take: within the handler timeout, with room to answer."""
    return settings.handler_timeout_s * BUDGET_SHARE


def identity_of(node_id: str) -> str:
    """The bus identity of a node: its reply stream, its own request stream, its sender name."""
    return f"raft-manager.{node_id}"


@dataclass(slots=True)
class AdapterNode:
    parts: NodeParts
    bus: Bus
    client: RaftClient
    swarm: SwarmClient = field(init=False)

    def __post_init__(self) -> None:
        self.swarm = SwarmClient(self.client)

    @property
    def node_id(self) -> str:
        return self.parts.node_id

    @property
    def settings(self) -> AdaptersConfig:
        assert self.parts.config.adapters is not None  # adapters run only when configured
        return self.parts.config.adapters

    @property
    def own_address(self) -> str:
        """This node's client address (for reads of its own state)."""
        return self.parts.config.nodes[self.node_id].client_address

    @property
    def budget_s(self) -> float:
        return budget_s(self.settings)


async def repeat(what: str, period: float, step: Callable[[], Awaitable[None]]) -> None:
    """`step()` every `period` seconds until cancelled; passing failures are logged."""
    while True:
        try:
            await step()
        except PASSING as error:
            log.warning("event=adapter_step_failed what=%s error=%r", what, str(error))
        await anyio.sleep(period)

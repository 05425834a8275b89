"""Starting the peer adapters with a node: which node does what, on which streams.

Theory of operation: when the cluster file has an [adapters] section, `adapter_services` gives
`raft-manager node` one service to start with the node (server/node.py runs it in the node's
task group; the server floor never imports this one). On every node it opens the bus as
`raft-manager.<node id>` (signing with the node's key ring, counting into the node's metrics,
reporting refusals to the Security Manager adapter) and a client of the cluster, builds the
adapters named in `peers`, and runs:

- `CONSUMERS` members of the `raft-manager` group on the shared request stream, each reading
  one entry at a time: every request is handled by exactly one member of one node, and a slow
  one (a benchmark, a learner catching up) holds up only its own member. Requests are carried
  out through the client, which takes commands to the leader, so any node can serve any
  request.
- one member of this node's own group on `raft-manager.<node id>`: what is about this node
  alone (its keys, its attestation).
- each adapter's periodic work. What describes the cluster is published by the leader only:
  membership and health reports, the change feed (one publisher, one order). What describes a
  node is published by every node about itself: metrics snapshots, authentication failures.

The adapters never stop the node: Redis being away is retried (by the bus and the loops), and
anything else that ends them (Redis refusing the credentials, a bug) is logged as
`event=adapters_stopped`, and the node goes on without them.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio

from raft_manager.client import RaftClient
from raft_manager.server.config import ClusterConfig
from raft_manager.server.node import NodeParts, Service

from .auth_reports import AuthFailureLog
from .benchmarker import BenchmarkerAdapter
from .bus import Bus
from .crdt_sync import CrdtAdapter
from .errors import BusError, BusUnavailable
from .handlers import Handlers
from .metrics import BusMetrics
from .node import AdapterNode, budget_s, identity_of
from .quorum import QuorumAdapter
from .security import SecurityAdapter
from .streams import RAFT_MANAGER

log = logging.getLogger("raft_manager.adapters")

CONSUMERS = 4
CLOSE_S = 1.0


class PeerAdapter(Protocol):
    def register(self, shared: Handlers, own: Handlers) -> None:
        """Add its request handlers: to the shared stream's, and to this node's own."""

    async def run(self) -> None:
        """Its periodic work, until cancelled."""


def adapter_services(config: ClusterConfig) -> list[Service]:
    """The services `raft-manager node` starts with the node: none without [adapters]."""
    return [] if config.adapters is None else [run_adapters]


async def run_adapters(parts: NodeParts) -> None:
    """Run this node's adapters until cancelled; log why if they end otherwise."""
    try:
        await _run(parts)
    except* BusError as refused:  # Redis refused the credentials or permissions
        log.error("event=adapters_stopped node=%s error=%r", parts.node_id, _leaves(refused))
    except* Exception:
        log.exception("event=adapters_stopped node=%s", parts.node_id)


def _leaves(group: BaseExceptionGroup[BusError]) -> str:
    found: list[str] = []
    for error in group.exceptions:
        found.append(_leaves(error) if isinstance(error, BaseExceptionGroup) else str(error))
    return "; ".join(found)


async def _run(parts: NodeParts) -> None:
    config = parts.config
    settings = config.adapters
    assert settings is not None
    failures = AuthFailureLog(parts.frame_stats)
    bus = Bus(
        settings,
        cluster_id=config.cluster_id,
        identity=identity_of(parts.node_id),
        keyring=parts.keyring,
        metrics=BusMetrics(parts.metrics.registry),
        on_reject=failures.record if "security-manager" in settings.peers else None,
    )
    own_address = config.nodes[parts.node_id].client_address
    addresses = [own_address, *(s.client_address for s in config.nodes.values())]
    try:
        await bus.connect()
    except BusUnavailable as error:  # not fatal: every Redis call retries
        log.warning("event=adapters_waiting_for_redis node=%s error=%r", parts.node_id, str(error))
    try:
        async with RaftClient(list(dict.fromkeys(addresses)), timeout=budget_s(settings)) as client:
            await _serve(AdapterNode(parts, bus, client), failures)
    finally:
        with anyio.move_on_after(CLOSE_S, shield=True):  # even when cancelled: let go of Redis
            await bus.aclose()


async def _serve(node: AdapterNode, failures: AuthFailureLog) -> None:
    settings, bus = node.settings, node.bus
    adapters = [_adapter(peer, node, failures) for peer in settings.peers]
    shared, own = Handlers(), Handlers()
    for adapter in adapters:
        adapter.register(shared, own)
    log.info(
        "event=adapters_started node=%s peers=%s types=%s",
        node.node_id,
        ",".join(settings.peers),
        ",".join(shared.types + own.types),
    )
    async with anyio.create_task_group() as group:
        if shared.types:
            for _ in range(CONSUMERS):
                group.start_soon(bus.serve(RAFT_MANAGER, shared, read_count=1).run)
        if own.types:
            group.start_soon(bus.serve(bus.identity, own).run)
        for adapter in adapters:
            group.start_soon(adapter.run)


def _adapter(peer: str, node: AdapterNode, failures: AuthFailureLog) -> PeerAdapter:
    if peer == "quorum-manager":
        return QuorumAdapter(node)
    if peer == "crdt-synchronizer":
        return CrdtAdapter(node)
    if peer == "security-manager":
        return SecurityAdapter(node, failures)
    return BenchmarkerAdapter(node)

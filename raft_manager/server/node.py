"""One node process: storage, Raft, transport, runtime and client endpoint, wired from config.

Theory of operation: `run_node` opens the node's storage (recovering, or refusing to start on
corruption), builds the Raft core from what it recovered, and runs the runtime (with the swarm
ledger as its state machine), the client endpoint and the ledger clock in one task group until
SIGTERM or SIGINT, then closes the storage. A node address that cannot be bound is reported as
ConfigError before anything else starts, and so are a key file or TLS certificates that
cannot be used ([security]: frames authenticated with the key file's keys, TCP over mutual TLS).

Services from the floors above (the swarm adapters) start with the node: `run_node` runs each
in the node's task group, handing it the node's `NodeParts` (what a service may use: the
config, the key ring, the metrics, the runtime's status); this floor never imports them.
"""

from __future__ import annotations

import logging
import random
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from raft_manager.core import ConfState, Raft, RaftConfig
from raft_manager.ledger import Ledger
from raft_manager.storage import FileStorage
from raft_manager.transport.auth import FrameAuthenticator
from raft_manager.transport.base import Transport, TransportStats, parse_address
from raft_manager.transport.framed import PendingWrites
from raft_manager.transport.keys import KeyFileError, KeyRing, load_key_file
from raft_manager.transport.redis_streams import RedisStreamsTransport
from raft_manager.transport.tcp import TcpTransport
from raft_manager.transport.tls import TlsConfigError, TlsContexts, mutual_tls

from .client_api import ClientServer
from .config import ClusterConfig, ConfigError
from .gateway import LedgerGateway
from .members import Directory, Membership
from .metrics import NodeMetrics
from .runtime import NodeRuntime

log = logging.getLogger("raft_manager.server")


@dataclass(frozen=True, slots=True)
class NodeParts:
    """What a service started with the node may use."""

    node_id: str
    config: ClusterConfig
    keyring: KeyRing | None  # None without [security] key_file; shared with frame authentication
    frames_authenticated: bool
    metrics: NodeMetrics
    frame_stats: TransportStats  # the Raft transport's counters (dropped frames by reason)
    is_leader: Callable[[], bool]


Service = Callable[[NodeParts], Coroutine[Any, Any, None]]


def check_bindable(address: str) -> None:
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"cannot listen on {address}: {error.strerror}") from None


def load_security(config: ClusterConfig, node_id: str) -> tuple[KeyRing | None, TlsContexts | None]:
    """The key ring ([security] key_file) and this node's TLS contexts, if configured."""
    security, spec = config.security, config.nodes[node_id]
    try:
        keyring = load_key_file(security.key_file) if security.key_file else None
        tls = None
        if security.tls_ca_file is not None:
            assert spec.tls_cert_file is not None and spec.tls_key_file is not None  # validated
            tls = mutual_tls(
                spec.tls_cert_file,
                spec.tls_key_file,
                security.tls_ca_file,
                security.tls_check_hostname,
            )
    except (KeyFileError, TlsConfigError) as error:
        raise ConfigError(str(error)) from None
    return keyring, tls


async def run_node(config: ClusterConfig, node_id: str, services: Sequence[Service] = ()) -> None:
    spec = config.nodes.get(node_id)
    if spec is None:
        raise ConfigError(f"node {node_id!r} is not in the cluster ({', '.join(config.nodes)})")
    if config.transport == "tcp":
        check_bindable(spec.address)
    check_bindable(spec.client_address)
    keyring, tls = load_security(config, node_id)
    storage = FileStorage(spec.data_dir, fsync=config.fsync)
    try:  # the storage holds its directory's lock: let go of it however the node ends
        await _serve(config, node_id, services, storage, keyring, tls)
    finally:
        storage.close()


async def _serve(
    config: ClusterConfig,
    node_id: str,
    services: Sequence[Service],
    storage: FileStorage,
    keyring: KeyRing | None,
    tls: TlsContexts | None,
) -> None:
    spec = config.nodes[node_id]
    authenticator = None
    if keyring is not None and config.security.authenticate_frames:
        authenticator = FrameAuthenticator(keyring, skew=config.security.frame_skew_s)
    raft_config = RaftConfig(
        id=node_id,
        voters=config.initial_voters,
        election_tick=config.election_ticks,
        heartbeat_tick=config.heartbeat_ticks,
        pre_vote=config.pre_vote,
        check_quorum=config.check_quorum,
        quorum_fanout=config.quorum_fanout,
    )
    raft = Raft(raft_config, random.Random(), storage.load())
    pending_writes = PendingWrites()  # every connection a write's messages and answers travel on
    transport: Transport
    if config.transport == "redis":
        transport = RedisStreamsTransport(
            node_id,
            config.cluster_id,
            config.redis_url,
            list(config.nodes),
            authenticator=authenticator,
        )
    else:
        transport = TcpTransport(
            node_id,
            config.cluster_id,
            spec.address,
            {peer: spec.dial.get(peer, other.address) for peer, other in config.nodes.items()},
            authenticator=authenticator,
            tls=tls,
            pending_writes=pending_writes,
        )
    ledger = Ledger(config.ledger)
    metrics = NodeMetrics(node_id)
    directory = Directory(config)
    client_addresses = {peer: other.client_address for peer, other in config.nodes.items()}

    def reach_members(conf: ConfState, committed: ConfState) -> None:
        addresses = directory.peers(conf, committed)
        transport.set_peers(
            {member: spec.dial.get(member, pair[0]) for member, pair in addresses.items()}
        )
        client_addresses.update({member: pair[1] for member, pair in addresses.items()})

    runtime = NodeRuntime(
        raft,
        storage,
        transport,
        ledger,
        tick_seconds=config.tick_ms / 1000,
        snapshot_every=config.snapshot_every,
        metrics=metrics,
        on_conf_change=reach_members,
        pending_writes=pending_writes,
    )
    metrics.watch(runtime.status, transport.stats)
    if spec.metrics_address is not None:
        check_bindable(spec.metrics_address)
        metrics.serve(spec.metrics_address)
    gateway = LedgerGateway(runtime, ledger, config.clock_ms / 1000)
    clients = ClientServer(
        runtime, gateway, Membership(runtime, directory), spec.client_address, client_addresses
    )
    parts = NodeParts(
        node_id,
        config,
        keyring,
        authenticator is not None,
        metrics,
        transport.stats,
        lambda: runtime.is_leader,
    )
    async with anyio.create_task_group() as group:
        await group.start(runtime.run)
        await group.start(clients.serve, group)
        group.start_soon(gateway.run_clock)
        for service in services:
            group.start_soon(service, parts)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            log.info(  # once it stops gracefully on a signal
                "event=node_started node=%s transport=%s address=%s client_address=%s",
                node_id,
                config.transport,
                spec.address,
                spec.client_address,
            )
            async for received in signals:
                log.info(
                    "event=node_stopping node=%s signal=%s",
                    node_id,
                    signal.Signals(received).name,
                )
                group.cancel_scope.cancel()
                break

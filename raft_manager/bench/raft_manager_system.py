"""raft-manager as a system under measurement: its own node processes, as configured by default.

Theory of operation: the cluster file is the one `cluster up` writes (server/local_cluster.py:
free loopback ports, every setting at its default, fsync on), over TCP or over Redis streams (a
redis-server started for the run); the nodes are `raft-manager node` processes; everything else
is ProtocolSystem's, since the nodes speak the client protocol natively.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

from raft_manager.server.config import ClusterConfig, load_config
from raft_manager.server.local_cluster import free_base_port, node_argv, write_config
from raft_manager.server.processes import NodeProcesses

from .protocol_system import ProtocolSystem
from .redis_server import redis_server
from .system import BenchError

NAME = "raft-manager"


@contextmanager
def raft_manager_system(directory: Path, nodes: int, transport: str) -> Iterator[ProtocolSystem]:
    """Start the nodes (and a redis-server for `transport` "redis"); stop them on the way out."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(directory)) if transport == "redis" else ""
        base = free_base_port(nodes)
        if base is None:
            raise BenchError("no free loopback ports for raft-manager's nodes")
        path = write_config(directory, nodes, base, transport, redis_url or None)
        config = load_config(path)
        argv = {node: node_argv(path, node, "--log-level", "WARNING") for node in config.nodes}
        processes = stack.enter_context(closing(NodeProcesses(directory, argv.__getitem__)))
        processes.start_all(argv)
        clients = {node: spec.client_address for node, spec in config.nodes.items()}
        yield ProtocolSystem(NAME, config.fsync, _setup(config, transport), processes, clients)


def _setup(config: ClusterConfig, transport: str) -> str:
    tick, ticks = config.tick_ms, config.election_ticks
    fsync = "on" if config.fsync else "off"
    return (
        f"defaults: fsync {fsync}, heartbeat {tick} ms, election timeout "
        f"{(ticks + 1) * tick}-{2 * ticks * tick} ms; {transport} transport"
    )

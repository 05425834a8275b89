"""PySyncObj as a system under measurement: bench nodes (pysyncobj_node.py) on loopback.

Theory of operation: each node is a `python -m raft_manager.bench.pysyncobj_node` process with
its own Raft port (PySyncObj's TCP transport) and client port on 127.0.0.1, in the layout of
server/local_cluster.py; PySyncObj runs with its defaults, which keep the log in memory and
never fsync (the report says so). The nodes speak raft-manager's client protocol, so the rest
is ProtocolSystem's. Only available when the pysyncobj package is importable (the `compare`
extra).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from raft_manager.server.local_cluster import CLIENT_PORT_OFFSET, free_base_port
from raft_manager.server.processes import NodeProcesses

from .protocol_system import ProtocolSystem
from .system import BenchError

NAME = "pysyncobj"
SETUP = (
    "defaults but appendEntriesUseBatch off (its setting for request latency: with batching "
    "a write waits for the 100 ms append period); log in memory, no fsync"
)


def pysyncobj_missing() -> str | None:
    """Why PySyncObj cannot run here, or None when it can."""
    if importlib.util.find_spec("pysyncobj") is None:
        return "not installed (pip install 'raft-manager[compare]')"
    return None


@contextmanager
def pysyncobj_system(directory: Path, nodes: int) -> Iterator[ProtocolSystem]:
    """Start the nodes; stop them on the way out."""
    base = free_base_port(nodes)
    if base is None:
        raise BenchError("no free loopback ports for PySyncObj's nodes")
    names = [f"n{k}" for k in range(1, nodes + 1)]
    raft = {name: f"127.0.0.1:{base + k}" for k, name in enumerate(names)}
    clients = {name: f"127.0.0.1:{base + CLIENT_PORT_OFFSET + k}" for k, name in enumerate(names)}
    specs = [f"--node={name}={raft[name]}={clients[name]}" for name in names]
    module = [sys.executable, "-m", "raft_manager.bench.pysyncobj_node"]
    argv = {name: [*module, "--id", name, *specs] for name in names}
    with closing(NodeProcesses(directory, argv.__getitem__)) as processes:
        processes.start_all(argv)
        yield ProtocolSystem(NAME, False, SETUP, processes, clients)

"""A local cluster on loopback: the cluster file's port layout and a node process's command.

Theory of operation: node k of a local cluster gets Raft port base+k-1 and client port
base+100+k-1 on 127.0.0.1; `free_base_port` finds a base whose ports are all free now (a race
with other programs stays possible: a node that cannot bind reports it and exits), preferably
below the ephemeral port range, and `write_config` writes the cluster file for that layout
(optionally with joining nodes, and `dial` maps that route peers through proxies). `node_argv`
is the command line of one `raft-manager node` process (run by the same interpreter). Nothing
here starts a process: the callers (`cluster up`, the demo, the bench, the chaos run) own
their processes and their lifetimes.
"""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

CLIENT_PORT_OFFSET = 100
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
LOW_PORTS = 10_000  # free_base_port looks from here up to the ephemeral range first


def raft_addresses(nodes: int, base_port: int) -> dict[str, str]:
    """The Raft address of each node of the layout, by node id."""
    return {f"n{k}": f"127.0.0.1:{base_port + k - 1}" for k in range(1, nodes + 1)}


def write_config(
    directory: Path,
    nodes: int,
    base_port: int,
    transport: str,
    redis_url: str | None = None,
    *,
    joining: int = 0,
    dial: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """A local cluster file: node k gets Raft port base+k-1 and client port base+100+k-1. The
    `joining` nodes after the `nodes` initial voters have `join = true` (members once added);
    `dial` gives nodes the addresses to reach peers at (node id -> peer id -> address); the
    `redis_url` (the Redis transport's) is left to its default when not given."""
    lines = ['cluster_id = "local"', f'transport = "{transport}"']
    if redis_url is not None:
        lines.append(f'redis_url = "{redis_url}"')
    for k, (node, address) in enumerate(raft_addresses(nodes + joining, base_port).items(), 1):
        lines += [
            f"[nodes.{node}]",
            f'address = "{address}"',
            f'client_address = "127.0.0.1:{base_port + CLIENT_PORT_OFFSET + k - 1}"',
            f'data_dir = "data/{node}"',
        ]
        if k > nodes:
            lines.append("join = true")
        if dial and dial.get(node):
            pairs = ", ".join(f'{peer} = "{via}"' for peer, via in dial[node].items())
            lines.append(f"dial = {{ {pairs} }}")
    path = directory / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def free_base_port(nodes: int) -> int | None:
    """A base port whose write_config layout is free on 127.0.0.1 now (None if 50 tries fail).
    It is looked for below the kernel's ephemeral port range first: there no outgoing
    connection and no listener on port 0 can take a node's port while the node is down, so a
    node that is killed and restarted gets its ports back."""
    low, rng = _ephemeral_low(), random.Random()
    for attempt in range(50):
        if attempt < 25 and low - 2 * CLIENT_PORT_OFFSET > LOW_PORTS:
            base = rng.randrange(LOW_PORTS, low - 2 * CLIENT_PORT_OFFSET)
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                base = probe.getsockname()[1]
        clients = base + CLIENT_PORT_OFFSET
        ports = (*range(base, base + nodes), *range(clients, clients + nodes))
        if clients + nodes < 65000 and all(_bindable(port) for port in ports):
            return base
    return None


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when it cannot say)."""
    try:
        return int(Path(EPHEMERAL_RANGE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


NODE_MODULE = "raft_manager.cli.node"  # how node processes start (processes.is_node_process)


def node_argv(config: Path, node_id: str, *options: str) -> list[str]:
    """The command line of a `raft-manager node` process (extra `options` appended), through
    the node command's own module: it starts faster than the whole command line."""
    return [
        sys.executable,
        "-m",
        NODE_MODULE,
        "--config",
        str(config),
        "--id",
        node_id,
        *options,
    ]

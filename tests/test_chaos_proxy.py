"""The fault-injecting proxy: bytes pass, a cut link swallows them, a restored link passes
again; and a real cluster wired through the proxies elects on the majority side of a
partition and converges after the heal."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
from anyio.abc import SocketStream
from cluster_helpers import IDS, Cluster, converged, leader_elected, statuses_of

from raft_manager.chaos.proxy import ChaosNetwork, LinkProxy
from raft_manager.transport.base import parse_address

_GONE = (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


async def _echo_server(received: list[bytes], group: anyio.abc.TaskGroup) -> int:
    async def handle(stream: SocketStream) -> None:
        async with stream:
            with contextlib.suppress(*_GONE):
                while True:
                    data = await stream.receive()
                    received.append(data)
                    await stream.send(data)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    group.start_soon(listener.serve, handle)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    return port


async def _connect(proxy: LinkProxy) -> SocketStream:
    host, port = parse_address(proxy.address)
    return await anyio.connect_tcp(host, port)


async def test_a_link_passes_bytes_swallows_them_when_cut_and_passes_again() -> None:
    received: list[bytes] = []
    async with anyio.create_task_group() as group:
        port = await _echo_server(received, group)
        proxy = LinkProxy(f"127.0.0.1:{port}")
        await group.start(proxy.serve, group)

        stream = await _connect(proxy)
        await stream.send(b"hello")
        with anyio.fail_after(5):
            assert await stream.receive() == b"hello"

        proxy.cut()  # the connection it carried is closed...
        with anyio.fail_after(5), contextlib.suppress(*_GONE):
            while True:
                await stream.receive()
        # ...and a new one is a black hole: writes succeed, nothing arrives.
        hole = await _connect(proxy)
        await hole.send(b"lost")
        await anyio.sleep(0.2)
        assert received == [b"hello"]

        proxy.restore()  # the black-holed connection is closed; new ones pass again
        with anyio.fail_after(5), contextlib.suppress(*_GONE):
            while True:
                await hole.receive()
        again = await _connect(proxy)
        await again.send(b"back")
        with anyio.fail_after(5):
            assert await again.receive() == b"back"
        assert received == [b"hello", b"back"]
        assert proxy.connections == 3
        group.cancel_scope.cancel()


def test_partition_cuts_exactly_the_links_between_sides() -> None:
    network = ChaosNetwork({node: f"127.0.0.1:{7000 + k}" for k, node in enumerate(IDS)})
    network.partition([["n1"], ["n2", "n3"]])
    assert network.cut_links == [("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n3", "n1")]
    network.partition([["n1", "n2"]])  # n3 is in no group: cut off from everyone
    assert network.cut_links == [("n1", "n3"), ("n2", "n3"), ("n3", "n1"), ("n3", "n2")]
    network.heal()
    assert network.cut_links == []


async def test_a_cluster_through_the_proxies_survives_a_partition_of_its_leader(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path)
    network = ChaosNetwork(dict(cluster.raft_addresses))
    try:
        async with anyio.create_task_group() as group:
            await network.start(group)
            cluster.write({node: network.dial(node) for node in IDS})
            for node in IDS:
                cluster.start(node)
            async with cluster.client() as client:
                leader = await leader_elected(client, cluster)
                await client.command({"op": "memory.put", "key": "before", "value": 1})
                others = [node for node in IDS if node != leader]
                network.partition([[leader], others])
                with anyio.fail_after(20):  # the majority side elects a new leader
                    while True:
                        statuses = await statuses_of(client, cluster)
                        leaders = {n for n in others if statuses.get(n, {}).get("role") == "leader"}
                        if leaders:
                            break
                        await anyio.sleep(0.05)
                await client.command({"op": "memory.put", "key": "during", "value": 2})
                network.heal()
                with anyio.fail_after(20):  # the old leader steps down and catches up
                    while True:
                        statuses = await statuses_of(client, cluster)
                        if statuses.get(leader, {}).get("role") == "follower":
                            break
                        await anyio.sleep(0.05)
                final = await converged(client, cluster, IDS)
                assert len({final[n]["state_digest"] for n in IDS}) == 1
            group.cancel_scope.cancel()
    finally:
        cluster.stop_all()

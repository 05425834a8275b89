"""Raft peers authenticated: frame MACs (codec, TCP, Redis, a cluster that keeps working while
forged frames arrive), mutual TLS on the TCP transport, and the [security] configuration."""

from __future__ import annotations

import contextlib
import random
import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import redis
from cluster_helpers import IDS, Cluster, leader_elected, statuses_of
from conftest import Inbox, RedisServer, free_port, free_ports
from tls_helpers import CertificateAuthority

from raft_manager.core import Heartbeat, Raft, RaftConfig
from raft_manager.ledger import Ledger, encode_entry
from raft_manager.ledger.commands import MemoryPut
from raft_manager.server.config import ConfigError, load_config
from raft_manager.server.node import load_security
from raft_manager.server.runtime import NodeRuntime
from raft_manager.storage import FileStorage
from raft_manager.transport.auth import FrameAuthenticator
from raft_manager.transport.codec import LENGTH_PREFIX, FrameError, decode, encode
from raft_manager.transport.keys import Key, KeyRing
from raft_manager.transport.redis_streams import RedisStreamsTransport, inbox_key
from raft_manager.transport.tcp import TcpTransport
from raft_manager.transport.tls import TlsContexts, mutual_tls

CLUSTER = "auth-test"
SECRET = b"s" * 32


def _heartbeat(round_: int = 1, frm: str = "a", to: str = "b") -> Heartbeat:
    return Heartbeat(frm=frm, to=to, term=2, commit=1, round=round_)


def _auth(*keys: Key, clock: float | None = None) -> FrameAuthenticator:
    ring = KeyRing(list(keys or (Key("k1", SECRET),)))
    if clock is None:
        return FrameAuthenticator(ring)
    return FrameAuthenticator(ring, skew=5, clock=lambda: clock)


# The codec


def test_a_sealed_frame_opens_and_every_tampering_is_refused_with_its_reason() -> None:
    auth = _auth()
    plain = encode(_heartbeat(), CLUSTER)
    sealed = encode(_heartbeat(), CLUSTER, auth)
    assert sealed.endswith(plain) and sealed[0] == 0xC1
    assert decode(sealed, CLUSTER, "b", auth) == _heartbeat()
    flipped_body = sealed[:-1] + bytes([sealed[-1] ^ 1])
    flipped_tag = sealed[:10] + bytes([sealed[10] ^ 1]) + sealed[11:]
    other_key = encode(_heartbeat(), CLUSTER, _auth(Key("k1", b"x" * 32)))
    for frame, reason in (
        (flipped_body, "bad-mac"),
        (flipped_tag, "bad-mac"),
        (other_key, "bad-mac"),  # same key id, another secret
        (encode(_heartbeat(), CLUSTER, _auth(Key("k2", SECRET))), "unknown-key"),
        (plain, "unauthenticated"),
        (sealed[:20], "unauthenticated"),
        (b"", "unauthenticated"),
    ):
        with pytest.raises(FrameError) as caught:
            decode(frame, CLUSTER, "b", auth)
        assert caught.value.reason == reason
    with pytest.raises(FrameError) as caught:
        decode(sealed, CLUSTER, "b")  # a receiver without keys cannot read sealed frames
    assert caught.value.reason == "undecodable"


def test_frame_keys_are_judged_by_the_receivers_clock_with_some_skew() -> None:
    key = Key("k1", SECRET, not_before=1000, expires=2000)
    sealed = encode(_heartbeat(), CLUSTER, _auth(key, clock=1500))
    assert decode(sealed, CLUSTER, "b", _auth(key, clock=2004)) == _heartbeat()  # within skew
    for clock, reason in ((2006, "expired-key"), (994, "key-not-yet-valid")):
        with pytest.raises(FrameError) as caught:
            decode(sealed, CLUSTER, "b", _auth(key, clock=clock))
        assert caught.value.reason == reason
    with pytest.raises(FrameError) as caught:
        encode(_heartbeat(), CLUSTER, _auth(key, clock=3000))
    assert caught.value.reason == "no-signing-key"


def test_rotation_seals_with_the_newest_key_and_opens_both() -> None:
    old, new = Key("old", SECRET, expires=2000), Key("new", b"n" * 32, not_before=1500)
    before = encode(_heartbeat(), CLUSTER, _auth(old, new, clock=1400))
    after = encode(_heartbeat(), CLUSTER, _auth(old, new, clock=1600))
    assert before[2:5] == b"old" and after[2:5] == b"new"
    receiver = _auth(old, new, clock=1700)
    assert decode(before, CLUSTER, "b", receiver) == decode(after, CLUSTER, "b", receiver)


# Transports


@asynccontextmanager
async def running(transport: TcpTransport | RedisStreamsTransport) -> AsyncIterator[Inbox]:
    inbox = Inbox()
    async with anyio.create_task_group() as group:
        await group.start(transport.serve, group, inbox.deliver)
        yield inbox
        group.cancel_scope.cancel()


async def _raw_send(port: int, payload: bytes, context: ssl.SSLContext | None = None) -> None:
    stream = await anyio.connect_tcp(
        "127.0.0.1", port, ssl_context=context, tls_standard_compatible=False
    )
    async with stream:
        await stream.send(payload)


async def test_tcp_peers_with_keys_talk_and_forged_frames_are_dropped_and_counted() -> None:
    port_a, port_b = free_port(), free_port()
    peers = {"a": f"127.0.0.1:{port_a}", "b": f"127.0.0.1:{port_b}"}
    a = TcpTransport("a", CLUSTER, peers["a"], peers, authenticator=_auth())
    b = TcpTransport("b", CLUSTER, peers["b"], peers, authenticator=_auth())
    forged = encode(_heartbeat(99), CLUSTER, _auth(Key("k1", b"x" * 32)))
    plain = encode(_heartbeat(98), CLUSTER)
    async with running(a), running(b) as inbox:
        for frame in (forged, plain):
            await _raw_send(port_b, LENGTH_PREFIX.pack(len(frame)) + frame)
        for round_ in range(1, 51):
            a.send(_heartbeat(round_))
        await inbox.wait_for(50)
        with anyio.fail_after(5):
            while sum(b.stats.dropped.values()) < 2:
                await anyio.sleep(0.005)
    assert [m.round for m in inbox.messages] == list(range(1, 51))  # type: ignore[attr-defined]
    assert b.stats.dropped["bad-mac"] == 1 and b.stats.dropped["unauthenticated"] == 1


async def test_redis_peers_with_keys_drop_forged_entries(redis_server: RedisServer) -> None:
    a = RedisStreamsTransport("a", CLUSTER, redis_server.url, ["a", "b"], authenticator=_auth())
    b = RedisStreamsTransport("b", CLUSTER, redis_server.url, ["a", "b"], authenticator=_auth())
    raw = redis.Redis.from_url(redis_server.url)
    async with running(a), running(b) as inbox:
        await anyio.sleep(0.1)  # the receiver reads from the newest entry on
        raw.xadd(
            inbox_key(CLUSTER, "b"),
            {"f": encode(_heartbeat(99), CLUSTER, _auth(Key("kx", SECRET)))},
        )
        raw.xadd(inbox_key(CLUSTER, "b"), {"f": encode(_heartbeat(98), CLUSTER)})
        a.send(_heartbeat(1))
        await inbox.wait_for(1)
        with anyio.fail_after(5):
            while sum(b.stats.dropped.values()) < 2:
                await anyio.sleep(0.005)
    raw.close()
    assert inbox.messages == [_heartbeat(1)]
    assert b.stats.dropped["unknown-key"] == 1 and b.stats.dropped["unauthenticated"] == 1


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki", "cluster-ca")


def _tls(authority: CertificateAuthority, name: str) -> TlsContexts:
    issued = authority.issue(name)
    return mutual_tls(issued.cert, issued.key, authority.cert)


async def test_tcp_over_mutual_tls_works_and_peers_without_a_valid_certificate_are_refused(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    peers = {"a": f"127.0.0.1:{port_a}", "b": f"127.0.0.1:{port_b}"}
    a = TcpTransport("a", CLUSTER, peers["a"], peers, tls=_tls(authority, "a"))
    b = TcpTransport("b", CLUSTER, peers["b"], peers, tls=_tls(authority, "b"))
    rogue_ca = CertificateAuthority(tmp_path / "rogue", "rogue-ca")
    rogue = rogue_ca.issue("rogue")  # a certificate the cluster's CA did not sign
    rogue_tls = mutual_tls(rogue.cert, rogue.key, authority.cert)  # trusts the real CA itself
    no_cert = ssl.create_default_context(cafile=str(authority.cert))  # presents no certificate
    frame = encode(_heartbeat(77), CLUSTER)
    framed = LENGTH_PREFIX.pack(len(frame)) + frame
    async with running(a) as inbox_a, running(b) as inbox_b:
        for round_ in range(1, 21):
            a.send(_heartbeat(round_))
        b.send(_heartbeat(1, "b", "a"))
        await inbox_b.wait_for(20)
        await inbox_a.wait_for(1)
        for context in (no_cert, rogue_tls.client, None):  # None: no TLS at all
            # refused during the handshake (or right after it, with TLS 1.3)
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await _raw_send(port_b, framed, context)
        with anyio.fail_after(5):
            while b.stats.dropped["tls-handshake"] < 3:
                await anyio.sleep(0.005)
        await anyio.sleep(0.1)
    assert [m.round for m in inbox_b.messages] == list(range(1, 21))  # type: ignore[attr-defined]
    assert b.stats.received == 20


async def test_a_dialler_refuses_a_listener_with_a_foreign_certificate(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    rogue_ca = CertificateAuthority(tmp_path / "rogue", "rogue-ca")
    impostor_cert = rogue_ca.issue("b")
    port_a, port_b = free_port(), free_port()
    peers = {"a": f"127.0.0.1:{port_a}", "b": f"127.0.0.1:{port_b}"}
    a = TcpTransport("a", CLUSTER, peers["a"], peers, tls=_tls(authority, "a"))
    impostor = TcpTransport(
        "b",
        CLUSTER,
        peers["b"],
        peers,
        tls=mutual_tls(impostor_cert.cert, impostor_cert.key, rogue_ca.cert),
    )
    async with running(a), running(impostor) as inbox:
        a.send(_heartbeat(1))
        with anyio.fail_after(5):
            while a.stats.dropped["tls-handshake"] < 1:
                await anyio.sleep(0.005)
    assert inbox.messages == []


# A cluster with keys and TLS


@asynccontextmanager
async def secured_cluster(
    tmp_path: Path, authority: CertificateAuthority
) -> AsyncIterator[list[NodeRuntime]]:
    ids = ("n1", "n2", "n3")
    addresses = {n: f"127.0.0.1:{port}" for n, port in zip(ids, free_ports(3), strict=True)}
    ring = KeyRing([Key("k1", SECRET)])
    runtimes = []
    for k, node in enumerate(ids):
        storage = FileStorage(tmp_path / node)
        raft = Raft(
            RaftConfig(id=node, voters=ids, election_tick=10), random.Random(k), storage.load()
        )
        transport = TcpTransport(
            node,
            CLUSTER,
            addresses[node],
            addresses,
            authenticator=FrameAuthenticator(ring),
            tls=_tls(authority, node),
        )
        runtimes.append(NodeRuntime(raft, storage, transport, Ledger(), tick_seconds=0.01))
    async with anyio.create_task_group() as group:
        for runtime in runtimes:
            await group.start(runtime.run)
        yield runtimes
        group.cancel_scope.cancel()
    for runtime in runtimes:
        runtime.storage.close()


async def test_a_cluster_with_keys_and_tls_commits_while_forged_frames_arrive(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """An attacker holding a valid certificate but not the frame key sends well-formed Raft
    messages (a vote request for a huge term): each is dropped and counted; the cluster
    commits on."""
    intruder = _tls(authority, "intruder")
    forged = encode(
        Heartbeat(frm="n2", to="n1", term=10**6, commit=0, round=1),
        CLUSTER,
        _auth(Key("k1", b"guess" * 8)),
    )
    async with secured_cluster(tmp_path, authority) as runtimes:
        with anyio.fail_after(10):
            while not any(runtime.is_leader for runtime in runtimes):
                await anyio.sleep(0.01)
        leader = next(runtime for runtime in runtimes if runtime.is_leader)
        term = leader.raft.term
        for runtime in runtimes:
            port = runtime.transport.port  # type: ignore[attr-defined]
            await _raw_send(port, LENGTH_PREFIX.pack(len(forged)) + forged, intruder.client)
        for n in range(30):
            result = await leader.propose(encode_entry(MemoryPut(key=f"k{n}", value=n), ts=1))
            assert result["ok"]  # type: ignore[index]
        with anyio.fail_after(5):
            while len({runtime.raft.log.applied for runtime in runtimes}) != 1:
                await anyio.sleep(0.01)
        assert leader.is_leader and leader.raft.term == term  # the forged term changed nothing
        for runtime in runtimes:
            assert runtime.transport.stats.dropped["bad-mac"] == 1


# Configuration


GOOD = """
cluster_id = "swarm"
[security]
key_file = "keys.toml"
authenticate_frames = true
tls_ca_file = "ca.pem"
[nodes.n1]
address = "127.0.0.1:7001"
client_address = "127.0.0.1:8001"
data_dir = "data/n1"
tls_cert_file = "n1.pem"
tls_key_file = "n1.key"
"""


def test_security_paths_resolve_from_the_files_folder_and_bad_settings_are_named(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.security.key_file == tmp_path / "keys.toml"
    assert config.nodes["n1"].tls_cert_file == tmp_path / "n1.pem"
    for change, problem in (
        (('tls_key_file = "n1.key"', ""), "needs tls_cert_file and tls_key_file"),
        (('key_file = "keys.toml"', ""), "authenticate_frames needs a key_file"),
        (('tls_ca_file = "ca.pem"', ""), "names a TLS file but security.tls_ca_file is unset"),
        (('cluster_id = "swarm"', 'transport = "redis"'), "rediss://"),
        (("authenticate_frames = true", "authenticate_frames = 3"), "authenticate_frames"),
    ):
        path.write_text(GOOD.replace(*change))
        with pytest.raises(ConfigError, match=r"cluster\.toml") as caught:
            load_config(path)
        assert problem in str(caught.value)


def test_a_node_refuses_to_start_with_unusable_keys_or_certificates(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match=r"keys\.toml"):
        load_security(load_config(path), "n1")
    (tmp_path / "keys.toml").write_text(f'[keys.k1]\nsecret_hex = "{SECRET.hex()}"\n')
    with pytest.raises(ConfigError, match=r"ca\.pem"):
        load_security(load_config(path), "n1")
    issued = authority.issue("n1")
    (tmp_path / "ca.pem").write_bytes(authority.cert.read_bytes())
    (tmp_path / "n1.pem").write_bytes(issued.cert.read_bytes())
    (tmp_path / "n1.key").write_bytes(authority.key.read_bytes())  # not this certificate's key
    with pytest.raises(ConfigError, match=r"n1\.pem"):
        load_security(load_config(path), "n1")
    (tmp_path / "n1.key").write_bytes(issued.key.read_bytes())
    keyring, tls = load_security(load_config(path), "n1")
    assert keyring is not None and keyring.key_ids() == ["k1"] and tls is not None


async def test_node_processes_with_tls_and_frame_keys_elect_commit_and_count_forgeries(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """`raft-manager node` wires [security] in: three processes over mutual TLS with MAC'd
    frames elect and commit, and a forged frame shows up in the metrics as bad-mac."""
    (tmp_path / "keys.toml").write_text(f'[keys.k1]\nsecret_hex = "{SECRET.hex()}"\n')
    cluster = Cluster(
        tmp_path,
        settings=(
            "[security]",
            'key_file = "keys.toml"',
            "authenticate_frames = true",
            f'tls_ca_file = "{authority.cert}"',
        ),
    )
    text = cluster.config.read_text()
    for node in IDS:
        issued = authority.issue(node)
        text = text.replace(
            f'data_dir = "data/{node}"\n',
            f'data_dir = "data/{node}"\ntls_cert_file = "{issued.cert}"\n'
            f'tls_key_file = "{issued.key}"\n',
        )
    cluster.config.write_text(text)
    for node in IDS:
        cluster.start(node)
    try:
        async with cluster.client() as client:
            leader = await leader_elected(client, cluster)
            for n in range(20):
                await client.command(MemoryPut(key=f"k{n}", value=n))
            forged = encode(
                Heartbeat(frm=leader, to="n1", term=10**6, commit=0, round=1),
                "test",
                _auth(Key("k1", b"guess" * 8)),
            )
            port = int(cluster.raft_addresses["n1"].rsplit(":", 1)[1])
            framed = LENGTH_PREFIX.pack(len(forged)) + forged
            await _raw_send(port, framed, _tls(authority, "intruder").client)
            metrics_url = f"http://{cluster.metrics_addresses['n1']}/metrics"
            with anyio.fail_after(10):
                while 'raft_frames_dropped_total{reason="bad-mac"} 1.0' not in (
                    await anyio.to_thread.run_sync(_fetch, metrics_url)
                ):
                    await anyio.sleep(0.05)
            # The forged frame's term (10**6) moved nobody: every node is (or comes) into the
            # leader's term, under the same leader. Waited for: a node that started after the
            # election may not have heard from the leader yet.
            with anyio.fail_after(10):
                while True:
                    statuses = await statuses_of(client, cluster)
                    terms = {status["term"] for status in statuses.values()}
                    if len(statuses) == len(IDS) and terms == {statuses[leader]["term"]}:
                        break
                    await anyio.sleep(0.05)
            assert statuses[leader]["role"] == "leader"
    finally:
        cluster.stop_all()


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_a_plaintext_frame_sent_before_the_tls_handshake_is_never_delivered(
    authority: CertificateAuthority,
) -> None:
    # Under uvloop an accepted socket is read right after connection_made, whatever the protocol
    # asked: a plain connection upgraded with loop.start_tls read the first bytes itself (a
    # peer's ClientHello, taken for an oversized frame: a refused handshake) and could take a
    # plaintext frame sent at once for a message. TLS is spoken from the first byte now.
    uvloop = pytest.importorskip("uvloop")
    port = free_port()
    peers = {"b": f"127.0.0.1:{port}"}
    frame = encode(_heartbeat(5), CLUSTER)

    async def scenario() -> tuple[int, int]:
        b = TcpTransport("b", CLUSTER, peers["b"], peers, tls=_tls(authority, "b"))
        async with running(b) as inbox:
            for _ in range(20):
                async with await anyio.connect_tcp("127.0.0.1", port) as raw:
                    await raw.send(LENGTH_PREFIX.pack(len(frame)) + frame)
                    with anyio.fail_after(5), contextlib.suppress(anyio.EndOfStream, OSError):
                        while True:  # the refusal: an alert, then the end of the stream
                            await raw.receive()
            return len(inbox.messages), b.stats.dropped["tls-handshake"]

    delivered, refused = uvloop.run(scenario())
    assert delivered == 0 and refused == 20

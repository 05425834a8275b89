"""The Security Manager adapter end to end, against a real redis-server and a real node: keys
distributed and rotated into the running ring with an overlap (no message refused), bad key
messages refused changing nothing, attestations, and authentication failures (bus envelopes,
Raft frames) reported."""

from __future__ import annotations

import json
import logging
import struct
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import redis
from adapter_helpers import Nodes, Peer, eventually, peer, running
from bus_helpers import CLUSTER, make_bus, settings
from conftest import RedisServer

from raft_manager.adapters import Bus, request_stream
from raft_manager.adapters.auth_reports import KEPT, AuthFailureLog
from raft_manager.adapters.errors import BusUnavailable
from raft_manager.adapters.messages import (
    SECURITY_ATTEST,
    SECURITY_FAILURES,
    SECURITY_KEYS,
    Attestation,
    KeysResult,
)
from raft_manager.adapters.security import SecurityAdapter
from raft_manager.adapters.signing import DETAIL_CHARS, Rejected, Rejection
from raft_manager.client import SwarmClient
from raft_manager.transport.base import TransportStats, parse_address
from raft_manager.transport.keys import Key, KeyRing

SECURITY = "security-manager"
S1, S2, FORGED = (bytes([n]) * 32 for n in (1, 2, 3))


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _exact(at: float) -> float:
    """`at` as the node will read it back from `_iso(at)`."""
    return datetime.fromisoformat(_iso(at)).timestamp()


def _nodes(tmp_path: Path, url: str) -> Nodes:
    (tmp_path / "keys.toml").write_text(f'[keys.k1]\nsecret_hex = "{S1.hex()}"\n')
    security = {"key_file": "keys.toml", "authenticate_frames": True}
    return Nodes(tmp_path, url, peers=(SECURITY,), sections={"security": security})


async def _keys(played: Peer, payload: dict[str, Any]) -> KeysResult:
    result = await played.ask(SECURITY_KEYS, payload, to="raft-manager.n1")
    assert isinstance(result, KeysResult)
    return result


async def _attest(played: Peer, to: str = "raft-manager.n1") -> Attestation:
    result = await played.ask(SECURITY_ATTEST, {"nonce": "n-1"}, to=to)
    assert isinstance(result, Attestation)
    return result


async def test_keys_rotate_into_the_running_ring_and_nothing_signed_in_its_window_is_refused(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = _nodes(tmp_path, redis_server.url)
    ring = KeyRing([Key("k1", S1)])  # the Security Manager's own ring
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, SECURITY, SECURITY_FAILURES, keyring=ring) as played,
    ):
        first = await _attest(played, to="raft-manager")  # any node answers on the shared stream
        assert (first.ok, first.node, first.nonce, first.members) == (True, "n1", "n-1", ["n1"])
        assert (first.key_ids, first.signing_key_id) == (["k1"], "k1")
        assert first.frames_authenticated and first.signatures_required
        now = time.time()
        # k2 signs from 0.6 s, k1 verifies until 1.6 s; both rounded as the ISO text rounds them,
        # so this ring and the node's agree to the microsecond
        k2_from, k1_until = (_exact(now + 0.6), _exact(now + 1.6))
        rotate = {
            "install": [{"key_id": "k2", "secret_hex": S2.hex(), "not_before": _iso(k2_from)}],
            "expire": {"k1": _iso(k1_until)},
        }
        installed = await _keys(played, rotate)
        assert (installed.ok, installed.key_ids, installed.signing_key_id) == (
            True,
            ["k1", "k2"],
            "k1",
        )
        ring.install(Key("k2", S2, not_before=k2_from))
        ring.install(Key("k1", S1, expires=k1_until))
        count = 0
        while time.time() < k1_until + 0.4:  # traffic both ways, through the whole overlap
            answer = await _attest(played)
            assert answer.ok
            count += 1
        signers = [reply.key_id for reply in played.replies[1:]]
        assert signers[0] == "k1" and signers[-1] == "k2" and set(signers) == {"k1", "k2"}
        assert signers == sorted(signers)  # switched once, never back
        final = await _attest(played)
        assert (final.key_ids, final.signing_key_id) == (["k1", "k2"], "k2")
        await anyio.sleep(1.2)  # a report would come within a second
        assert played.received[SECURITY_FAILURES] == []  # nothing was refused
    print(f"{count} attestations through the rotation")


async def test_bad_key_messages_change_nothing_and_authentication_failures_are_reported(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = _nodes(tmp_path, redis_server.url)
    async with (
        running(nodes, "n1"),
        peer(
            redis_server.url, SECURITY, SECURITY_FAILURES, keyring=KeyRing([Key("k1", S1)])
        ) as played,
    ):
        past = _iso(time.time() - 60)
        refusals: dict[str, tuple[dict[str, Any], str, str]] = {
            "no key left": ({"revoke": ["k1"]}, "rejected", "no key valid now"),
            "expired now": ({"expire": {"k1": past}}, "rejected", "no key valid now"),
            "new secret": (
                {"install": [{"key_id": "k1", "secret_hex": S2.hex()}]},
                "rejected",
                "different secret",
            ),
            "unknown key": ({"expire": {"k9": past}}, "rejected", "k9 is not installed"),
            "short secret": (
                {"install": [{"key_id": "k3", "secret_hex": "00ff"}]},
                "rejected",
                ">= 16 bytes",
            ),
            "bad hex": (
                {"install": [{"key_id": "k3", "secret_hex": "zz" * 16}]},
                "rejected",
                "not valid hex",
            ),
            "two secrets": (
                {"install": [{"key_id": "k3", "secret_hex": "00" * 16, "secret_base64": "AA=="}]},
                "rejected",
                "exactly one",
            ),
            "nothing": ({}, "bad-payload", "give keys"),
            "unknown field": ({"install": [], "rotate": True}, "bad-payload", "rotate"),
            "naive time": ({"expire": {"k1": "2030-01-01T00:00:00"}}, "bad-payload", "timezone"),
        }
        for name, (payload, code, says) in refusals.items():
            refused = await _keys(played, payload)
            assert (refused.ok, refused.error) == (False, code), name
            assert refused.reason is not None and says in refused.reason, (name, refused.reason)
            assert (refused.key_ids, refused.signing_key_id) == (["k1"], "k1"), name
        # envelopes the gate refuses: unsigned, forged, under a key the node does not hold
        for identity, keys in (
            ("unsigned", None),
            ("forger", KeyRing([Key("k1", FORGED)])),
            ("stranger", KeyRing([Key("k7", FORGED)])),
        ):
            async with Bus(
                settings(redis_server.url), cluster_id=CLUSTER, identity=identity, keyring=keys
            ) as bus:
                await bus.send("raft-manager.n1", SECURITY_KEYS, {"revoke": ["k1"]})
        # a Raft frame without a MAC, straight to the node's Raft port
        host, port = parse_address(nodes.raft_addresses["n1"])
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(struct.pack(">I", 5) + b"hello")

        def reported() -> dict[str, Any]:
            reports = played.payloads(SECURITY_FAILURES)
            reasons = {(r.sender, r.reason) for report in reports for r in report.rejections}
            frames: dict[str, int] = {}
            for report in reports:
                for reason, count in report.frames.items():
                    frames[reason] = frames.get(reason, 0) + count
            return {"rejections": reasons, "frames": frames}

        expected = {
            "rejections": {
                ("unsigned", "unsigned"),
                ("forger", "bad-signature"),
                ("stranger", "unknown-key"),
            },
            "frames": {"unauthenticated": 1},
        }
        await eventually(lambda: reported() == expected, timeout=10)
        assert {report.node for report in played.payloads(SECURITY_FAILURES)} == {"n1"}
        held = await _attest(played)
        assert (held.key_ids, held.signing_key_id) == (["k1"], "k1")  # still, after all that


async def test_redis_refusing_the_credentials_stops_the_adapters_not_the_node(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    raw.config_set("requirepass", "sesame")
    raw.close()
    nodes = Nodes(tmp_path, redis_server.url)  # no password in the URL
    with caplog.at_level(logging.ERROR, logger="raft_manager.adapters"):
        async with running(nodes, "n1"), nodes.client() as client:
            await eventually(lambda: "event=adapters_stopped" in caplog.text)
            result = await SwarmClient(client).memory_put("still", "here")
            assert result["ok"] is True
    assert "refused the credentials" in caplog.text and "sesame" not in caplog.text


# The failure reports themselves (a real Bus and Redis; the node's parts the adapter reads)


def _reporter(bus: Bus, frames: TransportStats) -> tuple[SecurityAdapter, AuthFailureLog]:
    failures = AuthFailureLog(frames)
    node = SimpleNamespace(node_id="n1", bus=bus)
    return SecurityAdapter(node, failures), failures  # type: ignore[arg-type]


def _reports(url: str) -> list[dict[str, Any]]:
    raw = redis.Redis.from_url(url)
    entries = raw.xrange(request_stream(CLUSTER, SECURITY))
    raw.close()
    return [json.loads(fields[b"envelope"]) for _, fields in entries]


async def test_a_report_too_big_for_an_envelope_lists_fewer_and_counts_the_rest(
    redis_server: RedisServer,
) -> None:
    # Rejection details can be long (a malformed envelope's extra field names, sent by anyone):
    # each is cut, and a report lists as many as fit in max_envelope_bytes.
    config = settings(redis_server.url, max_envelope_bytes=8192)
    async with make_bus(redis_server.url, "raft-manager.n1", config=config) as bus:
        adapter, failures = _reporter(bus, TransportStats())
        for n in range(KEPT + 5):
            failures.record(Rejection.of(Rejected("malformed", "x" * 20_000), "s", f"{n}-0"))
        await adapter.report()
    [report] = _reports(redis_server.url)
    listed = report["payload"]["rejections"]
    assert 0 < len(listed) < KEPT
    assert report["payload"]["omitted"] == KEPT + 5 - len(listed)
    assert {len(item["detail"]) for item in listed} == {DETAIL_CHARS}
    assert [item["entry_id"] for item in listed] == [f"{n}-0" for n in range(len(listed))]


async def test_failures_a_report_could_not_carry_go_in_the_next(
    redis_server: RedisServer,
) -> None:
    config = settings(redis_server.url, publish_timeout_s=0.3)
    frames = TransportStats()
    async with make_bus(redis_server.url, "raft-manager.n1", config=config) as bus:
        adapter, failures = _reporter(bus, frames)
        failures.record(Rejection("bad-signature", "forged", "s", "1-0", "e1", "mallory", "k1"))
        frames.dropped["bad-mac"] += 3
        redis_server.stop()
        with pytest.raises(BusUnavailable):
            await adapter.report()
        redis_server.start()
        frames.dropped["bad-mac"] += 1
        failures.record(Rejection("unsigned", "no signature", "s", "2-0"))
        await adapter.report()
        await adapter.report()  # nothing new: nothing sent
    [report] = _reports(redis_server.url)
    payload = report["payload"]
    assert [(r["reason"], r["entry_id"]) for r in payload["rejections"]] == [
        ("bad-signature", "1-0"),
        ("unsigned", "2-0"),
    ]
    assert (payload["omitted"], payload["frames"]) == (0, {"bad-mac": 4})

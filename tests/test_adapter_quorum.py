"""The Quorum Manager adapter end to end, against a real redis-server: membership and health
reports from the leader alone (node processes started by `raft-manager node` with [adapters]
in the cluster file), and membership requests carried out through the safe membership change,
with bad ones rejected and changing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter_helpers import Nodes, eventually, peer, running
from cluster_helpers import Cluster, leader_elected
from conftest import RedisServer

from raft_manager.adapters.messages import QUORUM_CHANGE, QUORUM_REPORT, ChangeResult
from raft_manager.client import RaftClient

QUORUM = "quorum-manager"


def _adapters(url: str) -> tuple[str, ...]:
    return (
        "[adapters]",
        f'redis_url = "{url}"',
        f'peers = ["{QUORUM}"]',
        "report_period_s = 0.5",
    )


async def test_node_processes_start_their_adapters_and_only_the_leader_reports(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path, settings=_adapters(redis_server.url))
    async with peer(redis_server.url, QUORUM, QUORUM_REPORT, cluster="test") as played:
        try:
            for node in ("n1", "n2", "n3"):
                cluster.start(node)
            async with cluster.client() as client:
                leader = await leader_elected(client, cluster)
            await eventually(lambda: len(played.received[QUORUM_REPORT]) >= 3, timeout=20)
            reports = played.payloads(QUORUM_REPORT)
            settled = [r for r in reports if r.health == "healthy"]
            assert settled and {r.reporter for r in reports} == {leader}
            assert all(r.leader == leader for r in settled)
            last = settled[-1]
            assert [(m.id, m.role, m.reachable) for m in last.members] == [
                (node, "voter", True) for node in ("n1", "n2", "n3")
            ]
            assert all(m.lag is not None and m.lag >= 0 for m in last.members)
            assert {m.state for m in last.members} == {"leader", "follower"}
            assert "period" in {r.trigger for r in reports[1:]}  # and again while unchanged
            follower = next(node for node in ("n1", "n2", "n3") if node != leader)
            seen = len(played.received[QUORUM_REPORT])
            cluster.stop(follower)

            def degraded() -> bool:
                later = played.payloads(QUORUM_REPORT)[seen:]
                return any(r.trigger == "change" and r.health == "degraded" for r in later)

            await eventually(degraded, timeout=10)
            report = next(
                r for r in played.payloads(QUORUM_REPORT)[seen:] if r.health == "degraded"
            )
            down = next(m for m in report.members if m.id == follower)
            assert (down.reachable, down.state, down.lag) == (False, None, None)
        finally:
            cluster.stop_all()


async def test_membership_requests_go_through_the_safe_change_and_bad_ones_change_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = Nodes(tmp_path, redis_server.url, joining=("n2", "n3"), peers=(QUORUM,))
    addresses = {
        "address": nodes.raft_addresses["n2"],
        "client_address": nodes.client_addresses["n2"],
    }
    absent = {"address": nodes.raft_addresses["n3"], "client_address": nodes.client_addresses["n3"]}
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, QUORUM, QUORUM_REPORT) as played,
        RaftClient([nodes.client_addresses["n1"]]) as client,
    ):
        await nodes.start("n2")

        async def ask(payload: dict[str, Any]) -> ChangeResult:
            result = await played.ask(QUORUM_CHANGE, payload)
            assert isinstance(result, ChangeResult)
            return result

        async def members() -> list[tuple[str, str]]:
            return [(m["id"], m["role"]) for m in (await client.members())["members"]]

        added = await ask({"action": "add", "node": "n2", **addresses})
        assert (added.ok, added.outcome, added.node) == (True, "applied", "n2")
        assert added.members is not None
        assert [(m.id, m.role) for m in added.members] == [("n1", "voter"), ("n2", "voter")]
        # n3 was never started: it joins as a learner but cannot catch up in time
        slow = await ask({"action": "add", "node": "n3", **absent, "timeout_ms": 1000})
        assert (slow.ok, slow.outcome, slow.error) == (False, "timed_out", "timed-out")
        assert slow.reason is not None and "n3 added as a learner" in slow.reason
        assert "has not caught up" in slow.reason
        assert await members() == [("n1", "voter"), ("n2", "voter"), ("n3", "learner")]

        def healthy_with_the_learner_down() -> bool:
            """Learners do not count toward the quorum (reviewed: they once made it degraded)."""
            return any(
                r.health == "healthy" and ("n3", "learner", False) in _rows(r)
                for r in played.payloads(QUORUM_REPORT)
            )

        await eventually(healthy_with_the_learner_down, timeout=10)
        before = await members()
        refusals: dict[str, tuple[dict[str, Any], str, str]] = {
            "not a member": ({"action": "remove", "node": "n9"}, "rejected", "n9 is not a member"),
            "a voter": ({"action": "promote", "node": "n1"}, "rejected", "n1 is not a learner"),
            "added twice": (
                {"action": "add", "node": "n2", **addresses},
                "rejected",
                "already a voter",
            ),
            "no addresses": ({"action": "add", "node": "n5"}, "bad-payload", "needs address"),
            "bad address": (
                {
                    "action": "add_learner",
                    "node": "n5",
                    "address": "nowhere",
                    "client_address": "x",
                },
                "bad-payload",
                "bad address",
            ),
            "unknown action": ({"action": "explode", "node": "n1"}, "bad-payload", "action"),
            "addresses on remove": (
                {"action": "remove", "node": "n3", **absent},
                "bad-payload",
                "takes no",
            ),
            "bad node id": ({"action": "remove", "node": "n 1"}, "bad-payload", "node"),
            "too long": (
                {"action": "remove", "node": "n3", "timeout_ms": 3_600_000},
                "rejected",
                "at most",
            ),
        }
        for name, (payload, code, says) in refusals.items():
            refused = await ask(payload)
            assert (refused.ok, refused.outcome, refused.error) == (False, "rejected", code), name
            assert refused.reason is not None and says in refused.reason, (name, refused.reason)
        assert await members() == before
        removed = await ask({"action": "remove", "node": "n3"})
        assert removed.outcome == "applied" and await members() == [
            ("n1", "voter"),
            ("n2", "voter"),
        ]


async def test_every_node_serves_requests_and_the_client_takes_them_to_the_leader(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Requests are spread over the nodes' consumers; the followers' reach the leader too."""
    nodes = Nodes(tmp_path, redis_server.url, voters=("n1", "n2", "n3"), peers=(QUORUM,))
    async with running(nodes, "n1", "n2", "n3"), peer(redis_server.url, QUORUM) as played:
        results = [
            await played.ask(QUORUM_CHANGE, {"action": "promote", "node": "n2"}) for _ in range(12)
        ]
    # the core's refusal, made by the leader whichever node took the request
    assert {(r.outcome, r.reason) for r in results} == {("rejected", "n2 is not a learner")}
    servers = {reply.sender for reply in played.replies}
    assert len(servers) >= 2 and servers <= {f"raft-manager.{n}" for n in ("n1", "n2", "n3")}


def _rows(report: Any) -> list[tuple[str, str, bool]]:
    return [(m.id, m.role, m.reachable) for m in report.members]

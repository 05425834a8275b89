"""Core inputs not covered elsewhere."""

from __future__ import annotations

import pytest
from scenario_helpers import run_until

from raft_manager.core import ProgressState, Role
from raft_manager.sim.cluster import SimCluster


def test_report_unreachable_drops_a_streaming_peer_back_to_probing() -> None:
    cluster = SimCluster(3, seed=4)
    cluster.run(60)
    leader = cluster.leader()
    assert leader is not None
    raft = leader.core()
    cluster.put(leader.id, "k", "v")
    cluster.run(5)
    follower = next(peer for peer in raft.progress if peer != raft.id)
    assert raft.progress[follower].state is ProgressState.REPLICATE
    raft.report_unreachable(follower)
    assert raft.progress[follower].state is ProgressState.PROBE
    raft.report_unreachable("stranger")  # unknown peers are ignored
    # Replication resumes on the next heartbeat answer.
    run_until(cluster, lambda: raft.progress[follower].state is ProgressState.REPLICATE, 10)
    assert raft.role is Role.LEADER


def _settled(seed: int) -> tuple[SimCluster, str, list[str]]:
    cluster = SimCluster(3, seed=seed)
    cluster.run(80)
    leader = cluster.leader()
    assert leader is not None
    followers = [node for node in cluster.ids if node != leader.id]
    return cluster, leader.id, followers


def _ticks_to_a_new_leader(cluster: SimCluster, old: str) -> int:
    for tick in range(1, 200):
        cluster.tick()
        found = cluster.leader()
        if found is not None and found.id != old:
            return tick
    raise AssertionError("no new leader within 200 ticks")


def test_followers_told_their_leader_is_gone_mostly_elect_within_one_election_timeout() -> None:
    """The transport saw the leader's connection close (a crash): the followers end its lease
    and campaign after 1..election_tick ticks, not after their whole randomized timeout."""
    hinted, plain = [], []
    for seed in range(20):
        for told, found in ((True, hinted), (False, plain)):
            cluster, leader, followers = _settled(seed)
            cluster.isolate(leader)
            if told:
                for follower in followers:
                    cluster.nodes[follower].core().report_unreachable(leader)
            found.append(_ticks_to_a_new_leader(cluster, leader))
    election_tick = cluster.base_config.election_tick
    assert min(plain) > election_tick, plain  # the leases run out first
    # Two followers that start within a vote round trip of each other split the vote and try
    # again after a full randomized timeout, hinted or not: so the median, not the maximum.
    assert sorted(hinted)[len(hinted) // 2] <= election_tick < sorted(plain)[len(plain) // 2]


def test_a_follower_told_wrongly_that_its_leader_is_gone_disturbs_nobody() -> None:
    """The leader lives and the other follower hears it: the told follower's pre-vote is
    refused (the other is in the leader's lease), so no term moves and the leader stays."""
    for seed in range(10):
        cluster, leader, followers = _settled(seed)
        term = cluster.nodes[leader].core().term
        for _ in range(5):  # told again and again, whatever its timer drew
            cluster.nodes[followers[0]].core().report_unreachable(leader)
            cluster.run(12)
        found = cluster.leader()
        assert found is not None and found.id == leader
        assert {cluster.nodes[n].core().term for n in cluster.ids} == {term}


@pytest.mark.parametrize("setting", [{"pre_vote": False}, {"lease_read": True}])
def test_without_pre_vote_or_with_lease_reads_the_report_changes_nothing(
    setting: dict[str, bool],
) -> None:
    cluster = SimCluster(3, seed=2, **setting)
    cluster.run(80)
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.ids if n != leader.id)
    core = cluster.nodes[follower].core()
    before = (core._election_elapsed, core._last_leader_contact, core._in_lease())
    core.report_unreachable(leader.id)
    assert (core._election_elapsed, core._last_leader_contact, core._in_lease()) == before


def test_a_follower_told_another_peer_is_gone_changes_nothing() -> None:
    cluster, leader, followers = _settled(3)
    core = cluster.nodes[followers[0]].core()
    before = (core._election_elapsed, core._last_leader_contact, core._in_lease(), core.leader)
    core.report_unreachable(followers[1])
    assert (core._election_elapsed, core._last_leader_contact, core._in_lease(), core.leader) == (
        before
    )
    assert before[2] is True and before[3] == leader

"""Core inputs not covered elsewhere."""

from __future__ import annotations

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
    """Only one follower lost its connection to a live leader: its pre-vote is refused by the
    other follower (still in the leader's lease), so no term moves and the leader stays."""
    cluster, leader, followers = _settled(7)
    term = cluster.nodes[leader].core().term
    cluster.cut(leader, followers[0])  # its messages to that follower are lost for a while
    cluster.nodes[followers[0]].core().report_unreachable(leader)
    cluster.run(40)
    cluster.heal()
    cluster.run(40)
    assert cluster.leader() is not None and cluster.leader().id == leader  # type: ignore[union-attr]
    assert {cluster.nodes[n].core().term for n in cluster.ids} == {term}


def test_a_follower_told_another_peer_is_gone_keeps_waiting_for_its_timeout() -> None:
    cluster, leader, followers = _settled(3)
    core = cluster.nodes[followers[0]].core()
    core.report_unreachable(followers[1])
    assert core.leader == leader
    cluster.run(30)
    assert cluster.leader() is not None and cluster.leader().id == leader  # type: ignore[union-attr]

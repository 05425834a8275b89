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

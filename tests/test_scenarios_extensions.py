"""Scenario tests for the extensions beyond the Raft paper's core: pre-vote, check-quorum,
leadership transfer, linearizable reads (ReadIndex and lease), and liveness after a partition
heals. Cluster-level behaviour runs on the deterministic SimCluster (fixed seeds)."""

from __future__ import annotations

import pytest
from scenario_helpers import (
    RecordingCluster,
    has_stable_leader,
    make_leader,
    memory,
    run_until,
    stable_leader,
)

from raft_manager.core import (
    Heartbeat,
    ProposalDropped,
    ReadIndexRequest,
    ReadIndexResponse,
    Role,
    TimeoutNow,
    TransferRejected,
)
from raft_manager.sim.cluster import SimCluster, SimNode

ELECTION_TICK = 10  # RaftConfig's default, used by every cluster below


def followers(cluster: SimCluster, leader: SimNode) -> list[str]:
    return [n for n in cluster.ids if n != leader.id]


def terms(cluster: SimCluster) -> dict[str, int]:
    return {node.id: node.core().term for node in cluster.live()}


# == pre-vote =====================================================================================


@pytest.mark.parametrize("check_quorum", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pre_vote_rejoining_partitioned_follower_does_not_raise_leader_term(
    seed: int, check_quorum: bool
) -> None:
    cluster = SimCluster(3, seed, pre_vote=True, check_quorum=check_quorum)
    leader = stable_leader(cluster)
    term = leader.core().term
    lonely = followers(cluster, leader)[0]
    cluster.isolate(lonely)
    cluster.run(20 * ELECTION_TICK)  # many election timeouts: it pre-campaigns again and again
    assert cluster.nodes[lonely].core().term == term  # a pre-vote never raises the term
    assert cluster.nodes[lonely].core().role is Role.PRE_CANDIDATE

    cluster.heal()
    cluster.run(5 * ELECTION_TICK)
    assert cluster.leader() is leader
    assert leader.core().term == term
    assert terms(cluster) == {n: term for n in cluster.ids}
    assert cluster.nodes[lonely].core().leader == leader.id
    assert cluster.stats["elections"] == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_without_pre_vote_rejoining_partitioned_follower_raises_the_term(seed: int) -> None:
    cluster = SimCluster(3, seed, pre_vote=False, check_quorum=False)
    leader = stable_leader(cluster)
    term = leader.core().term
    lonely = followers(cluster, leader)[0]
    cluster.isolate(lonely)
    cluster.run(20 * ELECTION_TICK)
    assert cluster.nodes[lonely].core().term > term + 5  # one new term per timeout

    cluster.heal()
    cluster.run(
        3 * ELECTION_TICK
    )  # its next vote request reaches the leader: the leader steps down
    run_until(cluster, lambda: has_stable_leader(cluster), 20 * ELECTION_TICK)
    new_leader = cluster.leader()
    assert new_leader is not None
    assert new_leader.core().term > term  # the rejoining node forced a new election
    assert cluster.stats["elections"] >= 2


# == check-quorum =================================================================================


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_check_quorum_isolated_leader_steps_down_within_two_election_timeouts(seed: int) -> None:
    cluster = SimCluster(3, seed, check_quorum=True)
    leader = stable_leader(cluster)
    term = leader.core().term
    cluster.isolate(leader.id)
    # The leader checks for a quorum once per window of election_tick ticks, and forgets who was
    # active at each check. Isolation can begin just after a window opened with followers'
    # answers already in it: that window still passes, and only the next full window (which sees
    # no answer) fails. Hence up to 2 * election_tick ticks, never more.
    ticks = run_until(cluster, lambda: leader.core().role is not Role.LEADER, 2 * ELECTION_TICK)
    assert ticks <= 2 * ELECTION_TICK
    assert leader.core().term == term  # stepping down does not need a new term
    assert leader.core().leader is None
    # The majority side elects a new leader in a later term.
    run_until(
        cluster,
        lambda: any(
            n.core().role is Role.LEADER and n.core().term > term
            for n in cluster.live()
            if n.id != leader.id
        ),
        10 * ELECTION_TICK,
    )


def test_without_check_quorum_isolated_leader_keeps_leading() -> None:
    cluster = SimCluster(3, 1, check_quorum=False)
    leader = stable_leader(cluster)
    cluster.isolate(leader.id)
    cluster.run(10 * ELECTION_TICK)
    assert leader.core().role is Role.LEADER


# == leadership transfer ==========================================================================


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_leadership_transfer_to_caught_up_follower_is_quick_and_bumps_term_once(
    seed: int,
) -> None:
    cluster = RecordingCluster(3, seed)
    leader = stable_leader(cluster)
    term = leader.core().term
    for k in range(3):
        cluster.put(leader.id, f"k{k}", "v")
    cluster.run(5)
    target = followers(cluster, leader)[-1]
    assert cluster.transfer(target)
    assert leader.core().transfer_target == target
    node = cluster.nodes[target]
    ticks = run_until(cluster, lambda: node.core().role is Role.LEADER, ELECTION_TICK)
    assert ticks < ELECTION_TICK  # faster than any timeout-driven election could be
    assert node.core().term == term + 1
    assert [m for m in cluster.delivered if isinstance(m, TimeoutNow)] != []
    cluster.run(3)
    assert leader.core().role is Role.FOLLOWER
    assert leader.core().leader == target
    assert leader.core().transfer_target is None
    # The new leader serves writes.
    index = cluster.put(target, "after", "transfer")
    assert index is not None
    run_until(
        cluster, lambda: all(memory(n).get("after") == "transfer" for n in cluster.live()), 20
    )


def test_leadership_transfer_to_lagging_follower_catches_it_up_first() -> None:
    cluster = SimCluster(3, 2)
    leader = stable_leader(cluster)
    target = followers(cluster, leader)[0]
    cluster.isolate(target)
    for k in range(5):
        cluster.put(leader.id, f"k{k}", "v")
    cluster.run(3)
    cluster.heal()
    assert cluster.transfer(target)
    node = cluster.nodes[target]
    run_until(cluster, lambda: node.core().role is Role.LEADER, 2 * ELECTION_TICK)
    # It won holding every committed write (it applies them once its own no-op commits: a
    # follower learns the commit index from the next append or heartbeat).
    assert node.core().log.last_index >= 6
    run_until(cluster, lambda: memory(node).get("k4") == "v", 5)


def test_leadership_transfer_to_down_target_aborts_after_one_election_timeout() -> None:
    cluster = SimCluster(3, 4)
    leader = stable_leader(cluster)
    term = leader.core().term
    target = followers(cluster, leader)[0]
    cluster.crash(target)
    assert cluster.transfer(target)
    raft = leader.core()
    assert raft.transfer_target == target
    with pytest.raises(ProposalDropped):
        raft.propose(b"k=refused")
    assert cluster.put(leader.id, "k", "refused") is None

    cluster.run(ELECTION_TICK - 1)
    assert raft.transfer_target == target  # still trying...
    cluster.tick()
    assert raft.transfer_target is None  # ...abandoned after one election timeout
    assert raft.role is Role.LEADER
    assert raft.term == term
    index = cluster.put(leader.id, "k", "accepted")
    assert index is not None
    run_until(cluster, lambda: memory(leader).get("k") == "accepted", 10)


def test_proposals_refused_while_transfer_in_progress() -> None:
    cluster = SimCluster(3, 5)
    leader = stable_leader(cluster)
    target = followers(cluster, leader)[1]
    cluster.isolate(target)  # the TimeoutNow cannot arrive: the transfer stays in progress
    assert cluster.transfer(target)
    for _ in range(ELECTION_TICK - 1):
        with pytest.raises(ProposalDropped):
            leader.core().propose(b"k=v")
        with pytest.raises(ProposalDropped):
            leader.core().propose_batch([b"k=v", b"k=w"])
        cluster.tick()
    assert memory(leader) == {}


def test_leadership_transfer_to_non_voter_is_rejected() -> None:
    leader = make_leader("a", ("a", "b", "c"), learners=("d",))
    assert leader.role is Role.LEADER
    with pytest.raises(TransferRejected):
        leader.transfer_leadership("d")  # a learner
    with pytest.raises(TransferRejected):
        leader.transfer_leadership("zz")  # not a member at all
    assert leader.transfer_target is None
    leader.propose(b"k=v")  # nothing was left half-done


# == linearizable reads ===========================================================================


@pytest.mark.parametrize("check_quorum", [True, False])
def test_read_index_on_leader_cut_off_from_majority_is_never_answered_then_fails(
    check_quorum: bool,
) -> None:
    cluster = RecordingCluster(3, 6, check_quorum=check_quorum)
    leader = stable_leader(cluster)
    cluster.isolate(leader.id)
    context = cluster.read(leader.id, "k")
    assert context is not None
    if check_quorum:
        # It steps down by itself (check-quorum), and the read fails then.
        cluster.run(2 * ELECTION_TICK)
        assert leader.core().role is Role.FOLLOWER
    else:
        # It never learns it was deposed while the partition lasts, yet it never answers.
        cluster.run(20 * ELECTION_TICK)
        assert leader.core().role is Role.LEADER
        assert context not in cluster.failed_reads(leader.id)
        cluster.heal()
        run_until(cluster, lambda: leader.core().role is not Role.LEADER, 5 * ELECTION_TICK)
    assert [rs for rs in cluster.read_states(leader.id) if rs[1] == context] == []
    assert context in cluster.failed_reads(leader.id)
    assert context not in leader.reads
    cluster.heal()
    cluster.run(5 * ELECTION_TICK)
    assert [rs for rs in cluster.read_states(leader.id) if rs[1] == context] == []


def test_read_index_on_leader_with_quorum_is_answered_at_commit_index() -> None:
    cluster = RecordingCluster(3, 7)
    leader = stable_leader(cluster)
    index = cluster.put(leader.id, "k", "v1")
    assert index is not None
    run_until(cluster, lambda: memory(leader).get("k") == "v1", 10)
    commit = leader.core().log.committed
    context = cluster.read(leader.id, "k")
    assert context is not None
    run_until(cluster, lambda: context not in leader.reads, 5)  # served within a round trip
    assert (commit, context) in cluster.read_states(leader.id)
    assert cluster.stats["reads_served"] == 1


def test_read_index_on_follower_is_forwarded_and_answered_by_leader() -> None:
    cluster = RecordingCluster(3, 8)
    leader = stable_leader(cluster)
    cluster.put(leader.id, "k", "v1")
    follower = followers(cluster, leader)[0]
    node = cluster.nodes[follower]
    run_until(cluster, lambda: memory(node).get("k") == "v1", 10)
    commit = leader.core().log.committed
    context = cluster.read(follower, "k")
    assert context is not None
    run_until(cluster, lambda: context not in node.reads, 10)
    forwarded = [m for m in cluster.delivered if isinstance(m, ReadIndexRequest)]
    assert [(m.frm, m.to, m.context) for m in forwarded] == [(follower, leader.id, context)]
    answers = [m for m in cluster.delivered if isinstance(m, ReadIndexResponse)]
    assert [(m.to, m.context, m.index) for m in answers] == [(follower, context, commit)]
    assert (commit, context) in cluster.read_states(follower)
    assert cluster.stats["reads_served"] == 1


def test_read_on_follower_without_known_leader_fails_fast() -> None:
    cluster = SimCluster(3, 9)
    assert cluster.read("n1", "k") is None  # NotLeader: nobody leads yet


@pytest.mark.parametrize("lease_read", [True, False])
def test_lease_read_answered_at_once_without_new_heartbeat_round(lease_read: bool) -> None:
    cluster = RecordingCluster(3, 10, check_quorum=True, lease_read=lease_read)
    leader = stable_leader(cluster)
    cluster.run(3)  # heartbeats acknowledged: the lease is fresh
    readies_before = len(cluster.readies)
    context = cluster.read(leader.id, "k")  # processes the leader's Readies, no tick, no delivery
    assert context is not None
    new_readies = [r for _, nid, r in cluster.readies[readies_before:] if nid == leader.id]
    answered_at_once = any(rs.context == context for r in new_readies for rs in r.read_states)
    heartbeats = [m for r in new_readies for m in r.messages if isinstance(m, Heartbeat)]
    if lease_read:
        assert answered_at_once
        assert heartbeats == []  # no new round was needed
    else:
        assert not answered_at_once  # ReadIndex: a heartbeat round must be acknowledged first
        assert len(heartbeats) == 2
        run_until(cluster, lambda: context not in leader.reads, 5)
    assert context in [ctx for _, ctx in cluster.read_states(leader.id)]


def test_lease_read_not_served_once_lease_expired_on_isolated_leader() -> None:
    cluster = RecordingCluster(3, 11, check_quorum=True, lease_read=True)
    leader = stable_leader(cluster)
    cluster.isolate(leader.id)
    cluster.run(ELECTION_TICK)  # no acknowledgement for a whole election timeout
    assert leader.core().role is Role.LEADER  # check-quorum has not deposed it yet (seeded)
    context = cluster.read(leader.id, "k")
    assert context is not None
    cluster.run(3 * ELECTION_TICK)
    assert [rs for rs in cluster.read_states(leader.id) if rs[1] == context] == []
    assert context in cluster.failed_reads(leader.id)


# == liveness after a partition heals =============================================================

LIVENESS_BOUND = 10 * ELECTION_TICK


@pytest.mark.parametrize("pre_vote", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_partition_heals_a_leader_is_elected_and_a_write_commits_within_bound(
    seed: int, pre_vote: bool
) -> None:
    cluster = SimCluster(5, seed, pre_vote=pre_vote)
    stable_leader(cluster)
    # No side holds a majority: no progress is possible while this lasts.
    cluster.partition(["n1", "n2"], ["n3", "n4"], ["n5"])
    cluster.run(20 * ELECTION_TICK)
    cluster.heal()
    start = cluster.now
    leader = stable_leader(cluster, LIVENESS_BOUND)
    index = cluster.put(leader.id, "live", "yes")
    assert index is not None
    run_until(
        cluster,
        lambda: sum(memory(n).get("live") == "yes" for n in cluster.live()) >= 3,
        LIVENESS_BOUND - (cluster.now - start),
    )
    assert cluster.now - start <= LIVENESS_BOUND


@pytest.mark.parametrize("seed", [1, 2])
def test_minority_side_cannot_commit_during_partition_but_catches_up_after_heal(
    seed: int,
) -> None:
    cluster = SimCluster(5, seed)
    leader = stable_leader(cluster)
    minority = [leader.id, followers(cluster, leader)[0]]
    majority = [n for n in cluster.ids if n not in minority]
    cluster.partition(minority, majority)
    index = cluster.put(leader.id, "lost", "write")
    assert index is not None
    run_until(cluster, lambda: has_stable_leader(cluster) and cluster.leader() is not leader, 100)
    cluster.run(ELECTION_TICK)
    assert all("lost" not in memory(cluster.nodes[n]) for n in cluster.ids)
    new_leader = cluster.leader()
    assert new_leader is not None
    assert new_leader.id in majority
    cluster.put(new_leader.id, "kept", "write")
    cluster.heal()
    run_until(
        cluster,
        lambda: all(memory(n).get("kept") == "write" for n in cluster.live()),
        LIVENESS_BOUND,
    )
    assert all("lost" not in memory(n) for n in cluster.live())  # the minority write was dropped

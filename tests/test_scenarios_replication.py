"""Scenario tests for log replication and commitment (Raft paper, sections 5.3 and 5.4.2, Figures 7
and 8), fast log backtracking, and snapshot installation on a follower that fell behind."""

from __future__ import annotations

import math

import pytest
from scenario_helpers import (
    Net,
    RecordingCluster,
    entry,
    flush,
    log_of,
    make,
    memory,
    run_until,
    stable_leader,
    step,
    terms_of,
)

from raft_manager.core import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    Message,
    Role,
    SnapshotAck,
    VoteResponse,
)
from raft_manager.sim.cluster import SimCluster

# == 5.3: a follower's conflicting suffix is replaced =============================================


def test_conflicting_uncommitted_suffix_is_truncated_and_ready_starts_at_conflict() -> None:
    follower = make("a", term=2, entries=log_of([1, 1, 2, 2, 2]), commit=2)
    flush(follower)
    # The leader of term 3 sends entries 3..6; entry 3 matches, 4 and 5 conflict.
    msg = AppendEntries(
        frm="b",
        to="a",
        term=3,
        prev_index=2,
        prev_term=1,
        entries=(entry(3, 2), entry(4, 3), entry(5, 3), entry(6, 3)),
        commit=2,
    )
    follower.step(msg)
    ready = flush(follower)
    # Only what changed is handed out to persist: the new entries from the conflict on.
    assert ready.entries == [entry(4, 3), entry(5, 3), entry(6, 3)]
    assert terms_of(follower) == [1, 1, 2, 3, 3, 3]
    assert ready.messages == [AppendResponse(frm="a", to="b", term=3, index=6)]


def test_conflict_truncates_entries_beyond_the_new_ones_too() -> None:
    follower = make("a", term=2, entries=log_of([1, 1, 2, 2, 2]), commit=2)
    flush(follower)
    msg = AppendEntries(
        frm="b", to="a", term=3, prev_index=3, prev_term=2, entries=(entry(4, 3),), commit=2
    )
    replies = step(follower, msg)
    assert terms_of(follower) == [1, 1, 2, 3]  # entry 5 (term 2) followed a conflict: gone
    assert replies == [AppendResponse(frm="a", to="b", term=3, index=4)]


def test_append_that_only_matches_a_prefix_does_not_truncate() -> None:
    """A delayed, shorter AppendEntries from the current leader must not cut entries it later
    sent (they do not conflict)."""
    follower = make("a", term=3, entries=log_of([1, 1, 3, 3, 3]), commit=1)
    flush(follower)
    msg = AppendEntries(
        frm="b", to="a", term=3, prev_index=1, prev_term=1, entries=(entry(2, 1),), commit=1
    )
    follower.step(msg)
    ready = flush(follower)
    assert ready.entries == []
    assert terms_of(follower) == [1, 1, 3, 3, 3]
    assert ready.messages == [AppendResponse(frm="a", to="b", term=3, index=2)]


def test_append_below_commit_index_never_touches_committed_entries() -> None:
    follower = make("a", term=3, entries=log_of([1, 1, 3]), commit=3)
    flush(follower)
    msg = AppendEntries(
        frm="b", to="a", term=3, prev_index=1, prev_term=1, entries=(entry(2, 3),), commit=3
    )
    replies = step(follower, msg)
    assert terms_of(follower) == [1, 1, 3]
    assert replies == [AppendResponse(frm="a", to="b", term=3, index=3)]  # "I hold up to 3"


# == Figure 7: any follower log converges to the leader's =========================================

FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],  # missing an entry
    "b": [1, 1, 1, 4],  # missing many
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # an extra uncommitted entry
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # extra entries of a later term
    "e": [1, 1, 1, 4, 4, 4, 4],  # missing entries, and extra ones of an old term
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # a long divergent history of terms 2 and 3
}
FIGURE7_VOTERS = ("a", "b", "c", "d", "e", "f", "leader")


def test_figure7_every_follower_log_converges_to_the_term8_leader_log() -> None:
    nodes = [make("leader", FIGURE7_VOTERS, term=7, entries=log_of(FIGURE7_LEADER), commit=3)]
    for seed, (name, terms) in enumerate(sorted(FIGURE7_FOLLOWERS.items())):
        # A node's current term is at least the term of its last entry.
        nodes.append(make(name, FIGURE7_VOTERS, seed=seed, term=terms[-1], entries=log_of(terms)))
    net = Net(nodes)
    leader = net.elect("leader")
    assert leader.term == 8
    # (c) and (d) hold more entries, or a later last term, and refuse; the others elect it.
    votes = {m.frm: m.granted for m in net.sent(VoteResponse, to="leader")}
    assert votes == {"a": True, "b": True, "c": False, "d": False, "e": True, "f": True}

    net.deliver_all()
    expected = [*log_of(FIGURE7_LEADER), leader.log.entries[-1]]  # plus the term-8 no-op
    assert leader.log.entries == expected
    for name in FIGURE7_FOLLOWERS:
        assert net[name].log.entries == expected, f"follower ({name}) did not converge"
    assert leader.log.committed == len(expected)
    # A follower whose ack arrived after the commit broadcast learns the commit index from the
    # next heartbeat (it carries min(match, commit)).
    net.run(1, "leader")
    for name in FIGURE7_FOLLOWERS:
        assert net[name].log.committed == len(expected), name


# == Figure 8: a previous-term entry is never committed by counting replicas ======================

VOTERS5 = ("s1", "s2", "s3", "s4", "s5")


def figure8_state_c() -> Net:
    """Replays Figure 8 (a)-(c) and returns the network in state (c).

    (a) S1 leads term 2 and replicates its index-2 entry to S2 only. (In this implementation the
        entry is the no-op every leader appends; the figure's entries 1 are the committed index 1.)
    (b) S1 crashes; S5 wins term 3 with the votes of S3, S4 and itself, appends its own entry at
        index 2, and crashes before sending it.
    (c) S1 restarts, wins term 4 (a first attempt in term 3 fails: S3 and S4 voted for S5 there),
        and replicates its term-2 entry to S3, so that it is on a majority (S1, S2, S3). Its
        term-4 entry (index 3) reaches S2 but not yet S3, and nothing reaches S4.
    One entry per AppendEntries (max_msg_bytes=1) so that index 2 and 3 travel separately.
    """
    nodes = [
        make(n, VOTERS5, seed=k, term=1, entries=[entry(1, 1)], commit=1, max_msg_bytes=1)
        for k, n in enumerate(VOTERS5)
    ]
    net = Net(nodes)

    # (a)
    net.hold = lambda m: isinstance(m, AppendEntries) and m.to != "s2"
    net.elect("s1")
    net.held.clear()
    assert [terms_of(net[n]) for n in VOTERS5] == [[1, 2], [1, 2], [1], [1], [1]]
    assert net["s1"].log.committed == 1

    # (b)
    net.crash("s1")
    net.hold = lambda m: isinstance(m, AppendEntries)
    s5 = net.elect("s5")
    assert s5.term == 3
    assert {m.frm for m in net.sent(VoteResponse, to="s5") if m.granted} == {"s3", "s4"}
    net.held.clear()
    net.crash("s5")
    assert terms_of(net["s5"]) == [1, 3]

    # (c)
    def hold_c(m: Message) -> bool:
        if not isinstance(m, AppendEntries):
            return False
        if m.to == "s4":
            return True
        # S3 first learns the term-2 entry; the term-4 entry is kept from it for now.
        s3_has_index_2 = net["s3"].log.last_index >= 2
        return m.to == "s3" and s3_has_index_2 and any(e.term == 4 for e in m.entries)

    net.hold = hold_c
    s1 = net.restart("s1")
    net.elect("s1")
    assert (s1.role, s1.term) == (Role.LEADER, 4)
    assert terms_of(s1) == [1, 2, 4]
    assert terms_of(net["s2"]) == [1, 2, 4]
    assert terms_of(net["s3"]) == [1, 2]
    assert terms_of(net["s4"]) == [1]
    return net


def test_figure8_term2_entry_on_majority_is_not_committed_by_term4_leader() -> None:
    net = figure8_state_c()
    s1 = net["s1"]
    holders = [n for n in VOTERS5 if net[n].log.term(2) == 2]
    assert holders == ["s1", "s2", "s3"]  # a majority holds the term-2 entry...
    assert s1.progress["s3"].match == 2  # ...and the leader knows it
    assert s1.log.committed == 1  # ...yet it is not committed: it is not of the current term
    assert net.checker.commit_index == 1


def test_figure8_uncommitted_term2_entry_can_be_overwritten_by_s5() -> None:
    """Figure 8 (d): had S1 committed its term-2 entry in (c), this would lose a committed entry."""
    net = figure8_state_c()
    net.crash("s1")
    net.held.clear()
    net.hold = None
    s5 = net.restart("s5", seed=5)
    net.elect("s5")  # S2 refuses (its last term is 4); S3 and S4 elect S5
    assert s5.role is Role.LEADER
    net.deliver_all()
    assert net["s3"].log.term(2) == 3  # the term-2 entry is gone from S3...
    assert net["s2"].log.term(2) == 3  # ...and from S2
    assert all(net[n].log.term(2) == 3 for n in ("s2", "s3", "s4", "s5"))
    # Safety held throughout (the Checker would have raised): index 2 was never committed before.
    assert net.checker.commit_index >= 3
    assert all(net[n].log.committed <= 1 or net[n].log.term(2) == 3 for n in VOTERS5)


def test_figure8_term4_entry_on_majority_commits_both_and_s5_cannot_overwrite() -> None:
    """Figure 8 (e): once an entry of the leader's own term is on a majority, it and everything
    before it are committed, and S5 can no longer be elected."""
    net = figure8_state_c()
    s1 = net["s1"]
    net.release_held()
    net.hold = lambda m: m.to == "s4"  # S4 still hears nothing from S1
    net.deliver_all()
    assert terms_of(net["s3"]) == [1, 2, 4]
    assert s1.log.committed == 3  # the term-4 entry commits, and the term-2 entry with it
    net.tick("s1")  # the followers learn the commit index from the next heartbeat
    net.deliver_all()
    assert net["s2"].log.committed == 3
    assert net["s3"].log.committed == 3
    assert net.checker.commit_index == 3

    net.crash("s1")
    net.held.clear()
    net.hold = None
    s5 = net.restart("s5", seed=5)
    for _ in range(4):
        net.campaign("s5")
        assert s5.role is not Role.LEADER
    refusals = {m.frm for m in net.sent(VoteResponse, to="s5") if not m.granted}
    assert {"s2", "s3"} <= refusals

    # Let the survivors run: only S2 or S3 can win, and S5 and S4 are brought in line.
    net.run(300, "s2", "s3", "s4", "s5")
    leaders = [n for n in ("s2", "s3", "s4", "s5") if net[n].role is Role.LEADER]
    assert len(leaders) == 1
    assert leaders[0] in ("s2", "s3")
    for n in ("s2", "s3", "s4", "s5"):
        assert terms_of(net[n])[:3] == [1, 2, 4], n


# == 5.3 optimisation: backtracking skips a whole term per rejection =============================

LEADER_HISTORY_LENGTH = 50  # entries after the common prefix


@pytest.mark.parametrize(
    ("follower_suffix_terms", "leader_suffix_length"),
    [
        pytest.param([2, 3, 4, 5, 6], 50, id="50-conflicting-entries-5-terms"),
        pytest.param([2, 3, 4, 5, 6], 20, id="follower-longer-than-leader"),
        pytest.param([], 50, id="follower-lagging-no-conflict"),
    ],
)
def test_fast_backtracking_rejections_bounded_by_conflicting_terms_not_entries(
    follower_suffix_terms: list[int], leader_suffix_length: int
) -> None:
    prefix = [1] * 5
    leader_terms = prefix + [7] * leader_suffix_length
    follower_terms = prefix + [t for t in follower_suffix_terms for _ in range(10)]
    net = Net(
        [
            make("a", term=7, entries=log_of(leader_terms)),
            make("b", seed=1, term=7, entries=log_of(leader_terms)),
            make("c", seed=2, term=6, entries=log_of(follower_terms)),
        ]
    )
    leader = net.elect("a")
    net.deliver_all()
    assert net["c"].log.entries == leader.log.entries

    rejections = [m for m in net.sent(AppendResponse, frm="c") if m.reject]
    leader_span = range(len(prefix) + 1, len(leader_terms) + 2)  # indexes the leader probes
    conflicting_terms = {
        e.term for e in log_of(follower_terms) if e.index in leader_span and e.term != 1
    }
    assert len(rejections) <= len(conflicting_terms) + 1
    assert len(rejections) < 10
    appends = net.sent(AppendEntries, frm="a", to="c")
    assert len(appends) <= len(conflicting_terms) + 3


def test_fast_backtracking_counts_one_rejection_per_conflicting_term() -> None:
    """The exact walk for the 50-entry case: each hint skips one whole term of the follower."""
    leader_terms = [1] * 5 + [7] * 50
    follower_terms = [1] * 5 + [t for t in (2, 3, 4, 5, 6) for _ in range(10)]
    net = Net(
        [
            make("a", term=7, entries=log_of(leader_terms)),
            make("b", seed=1, term=7, entries=log_of(leader_terms)),
            make("c", seed=2, term=6, entries=log_of(follower_terms)),
        ]
    )
    net.elect("a")
    net.deliver_all()
    rejections = [m for m in net.sent(AppendResponse, frm="c") if m.reject]
    assert [(m.hint_term, m.hint_index) for m in rejections] == [
        (6, 46),
        (5, 36),
        (4, 26),
        (3, 16),
        (2, 6),
    ]


# == snapshots: a follower that missed compacted entries ===========================================

CHUNK = 256  # a ledger snapshot of 31 keys (3.7 KB) goes in 15 chunks


def compacted_while_follower_down(seed: int = 5) -> tuple[RecordingCluster, str, str]:
    """A 3-node cluster whose leader and other follower compacted past what the crashed
    follower holds; the cluster is idle (nothing in flight) when this returns."""
    cluster = RecordingCluster(3, seed=seed, snapshot_chunk_bytes=CHUNK)
    leader = stable_leader(cluster)
    follower, other = (n for n in cluster.ids if n != leader.id)
    cluster.put(leader.id, "a", "before-crash")
    run_until(cluster, lambda: memory(cluster.nodes[follower]).get("a") == "before-crash", 50)

    cluster.crash(follower)
    for k in range(30):
        assert cluster.put(leader.id, f"key{k}", f"value-{k}-" + "x" * 10) is not None
        cluster.tick()
    last = leader.core().log.last_index
    run_until(
        cluster, lambda: all(cluster.nodes[n].applied >= last for n in (leader.id, other)), 50
    )
    cluster.run(5)  # let every message in flight land (or be lost)
    assert cluster.compact(leader.id)
    assert cluster.compact(other)
    assert leader.core().log.offset > cluster.nodes[follower].storage.last_index
    return cluster, leader.id, follower


def assert_installed_in_chunks_then_replicates(
    cluster: RecordingCluster, leader_id: str, follower: str, max_ticks: int
) -> None:
    leader, node = cluster.nodes[leader_id], cluster.nodes[follower]
    snapshot = leader.core().snapshot
    assert snapshot is not None
    expected_chunks = math.ceil(len(snapshot.data) / CHUNK)
    assert expected_chunks >= 3

    run_until(cluster, lambda: memory(node) == memory(leader), max_ticks)
    chunks = [m for m in cluster.delivered if isinstance(m, InstallSnapshot) and m.to == follower]
    offsets = sorted({m.offset for m in chunks})
    assert offsets == [k * CHUNK for k in range(expected_chunks)]  # several chunks, in order
    assert all(m.meta == snapshot.meta for m in chunks)
    # (A chunk can be delivered more than once: the leader resends the current chunk on every
    # heartbeat answer while it waits for the acknowledgement.)
    assert {m.offset for m in chunks if m.done} == {offsets[-1]}
    acks = [m for m in cluster.delivered if isinstance(m, SnapshotAck) and m.frm == follower]
    assert len(acks) >= expected_chunks - 1  # the follower acknowledges each non-final chunk
    # The state machine was restored from the snapshot, and the log now starts after it.
    assert node.core().log.offset >= snapshot.meta.index
    assert node.storage.snapshot is not None
    assert node.storage.snapshot.meta == snapshot.meta

    # Normal replication resumes after the snapshot.
    index = cluster.put(leader_id, "after", "snapshot")
    assert index is not None
    run_until(cluster, lambda: memory(node).get("after") == "snapshot", 50)
    appends = [
        m
        for m in cluster.delivered
        if isinstance(m, AppendEntries)
        and m.to == follower
        and any(e.index == index for e in m.entries)
    ]
    assert appends
    assert appends[0].prev_index >= snapshot.meta.index
    assert node.core().log.term(index) == leader.core().term
    assert memory(node) == memory(leader)


def test_follower_down_during_compaction_installs_chunked_snapshot_then_replicates() -> None:
    cluster, leader_id, follower = compacted_while_follower_down()
    cluster.restart(follower)
    # A client write right after the restart makes the leader send to the follower, which then
    # rejects, is probed, and is found to need the snapshot. (For an idle cluster see below.)
    assert cluster.put(leader_id, "b", "after-restart") is not None
    assert_installed_in_chunks_then_replicates(cluster, leader_id, follower, max_ticks=100)


def test_follower_down_during_compaction_catches_up_by_snapshot_in_idle_cluster() -> None:
    # Regression: heartbeat answers from a peer that is behind must trigger an append even when
    # nothing new is proposed, or appends lost in flight are never noticed.
    cluster, leader_id, follower = compacted_while_follower_down()
    cluster.restart(follower)
    assert_installed_in_chunks_then_replicates(cluster, leader_id, follower, max_ticks=100)


@pytest.mark.parametrize("fault", ["crash", "partition"])
def test_follower_that_missed_appends_catches_up_in_idle_cluster(fault: str) -> None:
    cluster = SimCluster(3, seed=0)
    leader = stable_leader(cluster)
    follower = next(n for n in cluster.ids if n != leader.id)
    if fault == "crash":
        cluster.crash(follower)
    else:
        cluster.isolate(follower)
    for k in range(5):
        cluster.put(leader.id, f"k{k}", "v")
    cluster.run(20)  # the writes commit on the majority; the appends to the follower are lost
    if fault == "crash":
        cluster.restart(follower)
    else:
        cluster.heal()
    node = cluster.nodes[follower]
    # Heartbeats go out every tick: ten election timeouts is plenty to catch up 5 entries.
    run_until(cluster, lambda: node.applied == leader.applied, 100)


PROBE_RESENDS = 5


def test_snapshot_chunks_are_sent_about_once_each() -> None:
    # Regression: a duplicate chunk's acknowledgement must not trigger another chunk, or each
    # duplicate starts a chunk/ack ping-pong that lasts until the transfer ends.
    cluster, leader_id, follower = compacted_while_follower_down()
    cluster.restart(follower)
    assert cluster.put(leader_id, "b", "after-restart") is not None
    snapshot = cluster.nodes[leader_id].core().snapshot
    assert snapshot is not None
    expected_chunks = math.ceil(len(snapshot.data) / CHUNK)
    start, first_message = cluster.now, len(cluster.delivered)
    node = cluster.nodes[follower]
    run_until(cluster, lambda: memory(node) == memory(cluster.nodes[leader_id]), 100)
    ticks = cluster.now - start
    chunks = [
        m
        for m in cluster.delivered[first_message:]
        if isinstance(m, InstallSnapshot) and m.to == follower
    ]
    # One chunk per acknowledgement, plus at most one resend per heartbeat answer (one per tick),
    # plus the first chunk sent again while the leader still probes (the follower's crash
    # closed its connections: the leader probes it, and each answer to a probe sends the first
    # chunk until one is acknowledged). A ping-pong would double the count.
    assert len(chunks) <= expected_chunks + ticks + PROBE_RESENDS

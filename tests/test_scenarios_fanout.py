"""Scenario tests for quorum fan-out (RaftConfig.quorum_fanout): a leader sends new entries at
once only to as many followers as a commit needs, the furthest along first, and to the others
when they answer its next heartbeat."""

from __future__ import annotations

from typing import Any

from scenario_helpers import Net, make

from raft_manager.core import AppendEntries, InstallSnapshot, Raft, Role

VOTERS5 = ("a", "b", "c", "d", "e")


def cluster(
    voters: tuple[str, ...] = ("a", "b", "c"), *, fanout: bool = True, **settings: Any
) -> Net:
    members = voters + tuple(settings.get("learners", ()))
    net = Net(
        make(node_id, voters, seed=k, quorum_fanout=fanout, **settings)
        for k, node_id in enumerate(members)
    )
    net.elect("a")
    net.deliver_all()
    return net


def propose(net: Net, data: bytes = b"x") -> int:
    """Propose on the leader "a" and deliver everything; returns the entry's index."""
    index = net["a"].propose(data)
    net.pump("a")
    net.deliver_all()
    return index


def appends_carrying(net: Net, index: int) -> set[str]:
    """The nodes that were sent an AppendEntries carrying entry `index`."""
    return {
        msg.to
        for msg in net.sent(AppendEntries, frm="a")
        if any(entry.index == index for entry in msg.entries)
    }


def heartbeat_round(net: Net) -> None:
    net.tick("a")
    net.deliver_all()


def last_index(raft: Raft) -> int:
    return raft.log.last_index


def test_a_new_entry_goes_at_once_to_one_follower_of_two_and_commits() -> None:
    net = cluster()
    index = propose(net)
    assert appends_carrying(net, index) == {"b"}  # both caught up: the lower id goes first
    assert net["a"].log.committed == index
    assert last_index(net["c"]) < index
    heartbeat_round(net)  # c answers the heartbeat behind, and is sent what it lacks
    assert appends_carrying(net, index) == {"b", "c"}
    assert last_index(net["c"]) == index and net["c"].log.committed == index


def test_five_voters_send_to_two_followers_at_once() -> None:
    net = cluster(VOTERS5)
    index = propose(net)
    assert len(appends_carrying(net, index)) == 2
    assert net["a"].log.committed == index
    heartbeat_round(net)
    assert appends_carrying(net, index) == {"b", "c", "d", "e"}


def test_without_fanout_every_follower_is_sent_the_entry_at_once() -> None:
    net = cluster(fanout=False)
    index = propose(net)
    assert appends_carrying(net, index) == {"b", "c"}


def test_the_follower_furthest_along_goes_first() -> None:
    net = cluster()
    net.block("a", "b")
    heartbeat_round(net)  # c catches up on what it lacked; b hears nothing
    first = propose(net)  # b still leads the ranking (same match as c): the entry is lost to it
    assert net["a"].log.committed < first
    heartbeat_round(net)  # c answers the heartbeat behind and is sent the entry: it commits
    assert net["a"].log.committed == first
    second = propose(net)  # c is now further along than b, which heard nothing
    assert "c" in appends_carrying(net, second)
    assert net["a"].log.committed == second


def test_an_unreachable_follower_is_passed_over_at_once() -> None:
    net = cluster()
    net.crash("b")
    net["a"].report_unreachable("b")  # the transport lost it: probed from now on
    index = propose(net)
    assert "c" in appends_carrying(net, index)
    assert net["a"].log.committed == index


def test_a_transfer_target_is_sent_entries_at_once() -> None:
    net = cluster()
    index = propose(net)
    assert last_index(net["c"]) < index  # held back: c lacks the entry
    net["a"].transfer_leadership("c")
    net.pump("a")
    net.deliver_all()
    assert net["c"].role is Role.LEADER


def test_a_held_back_follower_is_sent_what_a_compaction_would_cut_not_a_snapshot() -> None:
    net = cluster()
    index = propose(net)
    assert last_index(net["c"]) < index
    net["a"].compact(index, b"state at the entry")
    net.pump("a")
    net.deliver_all()
    assert last_index(net["c"]) == index
    assert not net.sent(InstallSnapshot, to="c")


def test_two_voters_and_four_voters_hold_back_what_a_commit_does_not_need() -> None:
    net = cluster(("a", "b"))
    assert appends_carrying(net, propose(net)) == {"b"}
    net = cluster(("a", "b", "c", "d"))  # a commit needs 3 of 4: two followers
    assert len(appends_carrying(net, propose(net))) == 2


def test_a_backlog_beyond_one_window_is_streamed_after_one_heartbeat() -> None:
    net = cluster(max_inflight_msgs=1, max_msg_bytes=64)  # a window of one small message
    net.block("a", "c")
    for _ in range(40):
        propose(net, b"x" * 20)
    net.blocked.clear()
    net.block("a", "b")  # then b goes silent, and no transport says so
    index = propose(net)
    assert net["a"].log.committed < index
    heartbeat_round(net)  # c answers behind: streamed to until it holds what a held then
    assert last_index(net["c"]) == index
    assert net["a"].log.committed == index


def test_a_learner_is_held_back_and_caught_up_at_a_heartbeat() -> None:
    net = cluster(learners=("d",))
    index = propose(net)
    assert "d" not in appends_carrying(net, index)
    heartbeat_round(net)
    assert last_index(net["d"]) == index

"""Membership changes in the core: one server at a time, effective once appended (Raft
dissertation, chapter 4), the 2015 fix, learners and their catch-up, removing the leader."""

from __future__ import annotations

import random

import pytest
from scenario_helpers import Net, config

from raft_manager.core import AppendEntries, Entry, EntryType, Raft, Role
from raft_manager.core.errors import ConfChangeRejected
from raft_manager.core.log import RaftLog
from raft_manager.core.membership import (
    ConfChange,
    ConfChangeKind,
    ConfHistory,
    apply_change,
)
from raft_manager.core.types import ConfState

ADD_VOTER, ADD_LEARNER = ConfChangeKind.ADD_VOTER, ConfChangeKind.ADD_LEARNER
PROMOTE, REMOVE = ConfChangeKind.PROMOTE, ConfChangeKind.REMOVE
ABC = ConfState(("a", "b", "c"))


def conf_entry(index: int, term: int, kind: ConfChangeKind, node: str) -> Entry:
    return Entry(index, term, EntryType.CONF_CHANGE, ConfChange(kind, node).encode())


# -- the rules of one change -----------------------------------------------------------------


def test_each_kind_of_change() -> None:
    assert apply_change(ABC, ConfChange(ADD_VOTER, "d")) == ConfState(("a", "b", "c", "d"))
    with_learner = apply_change(ABC, ConfChange(ADD_LEARNER, "d"))
    assert with_learner == ConfState(("a", "b", "c"), ("d",))
    promoted = apply_change(with_learner, ConfChange(PROMOTE, "d"))
    assert promoted == ConfState(("a", "b", "c", "d"))
    assert apply_change(promoted, ConfChange(REMOVE, "a")) == ConfState(("b", "c", "d"))
    assert apply_change(with_learner, ConfChange(REMOVE, "d")) == ABC


@pytest.mark.parametrize(
    ("conf", "change", "why"),
    [
        (ABC, ConfChange(ADD_VOTER, "a"), "already a member"),
        (ConfState(("a",), ("d",)), ConfChange(ADD_LEARNER, "d"), "already a member"),
        (ABC, ConfChange(PROMOTE, "a"), "not a learner"),
        (ABC, ConfChange(REMOVE, "z"), "not a member"),
        (ConfState(("a",), ("d",)), ConfChange(REMOVE, "a"), "last voter"),
    ],
)
def test_changes_that_do_not_apply_are_refused(
    conf: ConfState, change: ConfChange, why: str
) -> None:
    with pytest.raises(ConfChangeRejected, match=why):
        apply_change(conf, change)


def test_a_change_round_trips_and_garbage_decodes_to_none() -> None:
    change = ConfChange(ADD_LEARNER, "d", "127.0.0.1:7104")
    assert ConfChange.decode(change.encode()) == change
    for garbage in (b"", b"{", b"[]", b'{"kind":"grow","node":"d"}', b'{"kind":"remove"}'):
        assert ConfChange.decode(garbage) is None
    assert ConfChange.decode(b'{"kind":"remove","node":""}') is None
    assert ConfChange.decode(b'{"kind":"remove","node":"d","context":5}') is None


# -- the history of a log's configurations ---------------------------------------------------


def test_the_configuration_is_the_newest_entry_in_the_log_and_rolls_back_with_it() -> None:
    entries = [Entry(1, 1), conf_entry(2, 1, ADD_LEARNER, "d"), conf_entry(3, 1, PROMOTE, "d")]
    log = RaftLog(0, 0, list(entries), 0)
    history = ConfHistory(ABC, entries)
    assert history.current == ConfState(("a", "b", "c", "d"))
    assert history.at(1) == ABC and history.at(2) == ConfState(("a", "b", "c"), ("d",))
    # A new leader overwrites index 3 (never committed) with another entry: d is a learner again.
    replacement = [Entry(3, 2), Entry(4, 2)]
    assert log.maybe_append(2, 1, 0, replacement) == 4
    history.follow(log, replacement)
    assert history.current == ConfState(("a", "b", "c"), ("d",))
    assert history.last_change_index == 2
    history.compact(3)
    assert history.current == ConfState(("a", "b", "c"), ("d",))


def test_an_entry_whose_change_does_not_apply_is_the_same_no_op_everywhere() -> None:
    history = ConfHistory(ABC, [conf_entry(1, 1, REMOVE, "z"), Entry(2, 1, EntryType.CONF_CHANGE)])
    assert history.current == ABC
    assert history.last_change_index == 2


# -- a cluster changing under the protocol ----------------------------------------------------


def five(*joining: str) -> Net:
    """a, b, c as the initial voters; `joining` nodes start with the same initial configuration
    (they are not members of it, so they never campaign) and learn the rest from the log."""
    nodes = [Raft(config(n), random.Random(k)) for k, n in enumerate(("a", "b", "c", *joining))]
    return Net(nodes)


def commit_change(net: Net, leader: str, change: ConfChange) -> int:
    index = net[leader].propose_conf_change(change)
    # The leader counts majorities of the new configuration from now on: so does the checker.
    net.checker.voters = net[leader].conf.voters
    net.pump(leader)
    net.run(3)
    assert net[leader].log.committed >= index
    return index


def propose(net: Net, leader: str, count: int) -> None:
    net[leader].propose_batch([f"k{k}=v".encode() for k in range(count)])
    net.pump(leader)
    net.run(2)


def test_a_new_leader_proposes_no_change_before_an_entry_of_its_term_commits() -> None:
    net = five()
    net.hold = lambda msg: isinstance(msg, AppendEntries)  # the no-op cannot commit yet
    leader = net.elect("a")
    with pytest.raises(ConfChangeRejected, match="no entry of this leader's term"):
        leader.propose_conf_change(ConfChange(ADD_LEARNER, "d"))
    net.hold = None
    net.release_held()
    net.run(2)
    assert leader.log.term(leader.log.committed) == leader.term
    leader.propose_conf_change(ConfChange(ADD_LEARNER, "d"))


def test_one_change_at_a_time() -> None:
    net = five("d", "e")
    net.elect("a")
    net.run(2)
    net["a"].propose_conf_change(ConfChange(ADD_LEARNER, "d"))
    with pytest.raises(ConfChangeRejected, match="another membership change"):
        net["a"].propose_conf_change(ConfChange(ADD_LEARNER, "e"))
    net.pump("a")
    net.run(3)
    net["a"].propose_conf_change(ConfChange(ADD_LEARNER, "e"))  # the first one committed


def test_the_2015_bug_scenario_cannot_give_two_leaders_one_term() -> None:
    """Ongaro's 2015 raft-dev scenario: leader a of {a,b,c,d} adds e, but the entry reaches only
    a before a fails; b, elected, removes d at once; a, back, could then win with {a, e} in its
    5-member configuration while b leads {b, c} of its 3-member one. With the fix b cannot
    propose its change until an entry of its own term commits, which overwrites a's entry on
    a majority first."""
    nodes = [Raft(config(n, ("a", "b", "c", "d")), random.Random(k)) for k, n in enumerate("abcde")]
    net = Net(nodes)
    net.checker.voters = ("a", "b", "c", "d")
    net.elect("a")
    net.run(2)
    for peer in "bcde":
        net.block("a", peer)
    net["a"].propose_conf_change(ConfChange(ADD_VOTER, "e"))  # reaches a's log only
    net.pump("a")
    net.crash("a")
    net.hold = lambda msg: isinstance(msg, AppendEntries)  # b's no-op cannot commit yet
    b = net.elect("b")
    term_of_b = b.term
    with pytest.raises(ConfChangeRejected, match="no entry of this leader's term"):
        b.propose_conf_change(ConfChange(REMOVE, "d"))
    net.hold = None
    net.release_held()
    net.run(2)
    commit_change(net, "b", ConfChange(REMOVE, "d"))
    for peer in "bcde":
        net.blocked.discard(("a", peer))
        net.blocked.discard((peer, "a"))
    net.restart("a")
    net.run(60)
    assert net["a"].conf == ConfState(("a", "b", "c"))  # a's lone entry was overwritten
    assert [leader for leader, term in net.leaders if term == term_of_b] == ["b"]
    # (the checker asserts Election Safety for every term after every step as well)


def test_grow_three_to_five_through_learners_and_back_under_load() -> None:
    net = five("d", "e")
    net.elect("a")
    net.run(2)
    for node in ("d", "e"):
        commit_change(net, "a", ConfChange(ADD_LEARNER, node))
        propose(net, "a", 20)
        assert net[node].log.last_index == net["a"].log.last_index  # learners replicate
        assert net[node].role is Role.FOLLOWER and node not in net["a"].conf.voters
        commit_change(net, "a", ConfChange(PROMOTE, node))
    assert net["a"].conf == ConfState(("a", "b", "c", "d", "e"))
    net.crash("b")
    net.crash("c")
    propose(net, "a", 10)  # a, d, e are a majority of five now
    assert net["a"].log.committed == net["a"].log.last_index
    net.restart("b")
    net.restart("c")
    net.run(5)
    for node in ("d", "e"):
        commit_change(net, "a", ConfChange(REMOVE, node))
        propose(net, "a", 5)
    assert net["a"].conf == ABC and set(net["a"].progress) == {"a", "b", "c"}
    net.crash("d")
    net.crash("e")
    propose(net, "a", 5)
    assert net["a"].log.committed == net["a"].log.last_index


def test_a_learner_that_has_not_caught_up_is_not_promoted() -> None:
    net = five("d")
    net.elect("a")
    net.run(2)
    commit_change(net, "a", ConfChange(ADD_LEARNER, "d"))
    net.block("a", "d")
    propose(net, "a", 30)
    net.run(20)
    with pytest.raises(ConfChangeRejected, match="learner d has not caught up"):
        net["a"].propose_conf_change(ConfChange(PROMOTE, "d"))
    net.blocked.clear()
    net.run(5)
    commit_change(net, "a", ConfChange(PROMOTE, "d"))


def test_learners_never_vote_never_count_and_never_campaign() -> None:
    net = five("d")
    net.elect("a")
    net.run(2)
    commit_change(net, "a", ConfChange(ADD_LEARNER, "d"))
    net.crash("b")
    net.crash("c")
    before = net["a"].log.committed
    propose(net, "a", 3)  # a and the learner d hold them: not a majority of a, b, c
    assert net["a"].log.committed == before
    net.crash("a")
    net.run(100, "d")
    assert net["d"].role is Role.FOLLOWER and net["d"].term == net["a"].term


def test_a_leader_that_removes_itself_steps_down_once_the_change_commits() -> None:
    net = five()
    net.elect("a")
    net.run(2)
    term = net["a"].term
    index = net["a"].propose_conf_change(ConfChange(REMOVE, "a"))
    net.pump("a")
    assert net["a"].role is Role.LEADER  # still leading while the change is uncommitted
    net.run(3)
    assert net["a"].role is Role.FOLLOWER and net["a"].log.committed >= index
    leaders = [n for n in "bc" if net[n].role is Role.LEADER]
    assert len(leaders) == 1 and net[leaders[0]].term == term + 1  # handed over at once
    net.checker.voters = ("b", "c")
    net.run(100)  # the removed node stays quiet: no election it starts disturbs b and c
    assert net[leaders[0]].role is Role.LEADER and net[leaders[0]].term == term + 1

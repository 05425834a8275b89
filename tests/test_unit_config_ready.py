"""Unit tests for RaftConfig validation and the Ready / advance contract of the Raft core."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from raft_manager.core import (
    AppendEntries,
    AppendResponse,
    ConfigError,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Raft,
    RaftConfig,
    RaftError,
    Ready,
    ReadyMisuse,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
    VoteResponse,
)

VOTERS = ("n1", "n2", "n3")

# -- RaftConfig ----------------------------------------------------------------------------------


def test_default_config_is_valid() -> None:
    config = RaftConfig(id="n1", voters=VOTERS)
    assert config.election_tick > config.heartbeat_tick >= 1
    assert 0 <= config.max_clock_drift_ticks < config.election_tick


@pytest.mark.parametrize(
    "overrides",
    [
        {"learners": ("n4",)},
        {"voters": (), "learners": ("n1",)},  # a learner-only start is allowed
        {"election_tick": 2, "heartbeat_tick": 1, "max_clock_drift_ticks": 1},
        {"max_clock_drift_ticks": 0},
        {"lease_read": True, "check_quorum": True},
        {"pre_vote": False, "check_quorum": False},
        {
            "max_msg_bytes": 1,
            "max_inflight_msgs": 1,
            "max_inflight_bytes": 1,
            "snapshot_chunk_bytes": 1,
        },
    ],
)
def test_valid_configs(overrides: dict[str, Any]) -> None:
    RaftConfig(**{"id": "n1", "voters": VOTERS, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ""}, "id"),
        ({"id": 1}, "id"),
        ({"id": None}, "id"),
        ({"voters": (), "learners": ()}, "no members"),
        ({"learners": ("n2",)}, "both voter and learner"),
        ({"heartbeat_tick": 0}, "heartbeat_tick"),
        ({"heartbeat_tick": -3}, "heartbeat_tick"),
        ({"election_tick": 5, "heartbeat_tick": 5, "max_clock_drift_ticks": 0}, "election_tick"),
        ({"election_tick": 3, "heartbeat_tick": 4, "max_clock_drift_ticks": 0}, "election_tick"),
        ({"lease_read": True, "check_quorum": False}, "lease_read"),
        ({"max_clock_drift_ticks": -1}, "max_clock_drift_ticks"),
        ({"max_clock_drift_ticks": 10, "election_tick": 10}, "max_clock_drift_ticks"),
        ({"max_msg_bytes": 0}, "max_msg_bytes"),
        ({"max_inflight_msgs": 0}, "max_inflight_msgs"),
        ({"max_inflight_bytes": 0}, "max_inflight_bytes"),
        ({"snapshot_chunk_bytes": 0}, "snapshot_chunk_bytes"),
        ({"snapshot_chunk_bytes": -1}, "snapshot_chunk_bytes"),
    ],
)
def test_invalid_configs_raise_config_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RaftConfig(**{"id": "n1", "voters": VOTERS, **overrides})
    assert isinstance(info.value, RaftError)


def test_config_is_immutable() -> None:
    config = RaftConfig(id="n1", voters=VOTERS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.election_tick = 3  # type: ignore[misc]


# -- Ready / advance -----------------------------------------------------------------------------


def make_raft(node_id: str = "n2", voters: tuple[str, ...] = VOTERS, **config: Any) -> Raft:
    return Raft(RaftConfig(id=node_id, voters=voters, **config), random.Random(7))


def drain(raft: Raft) -> None:
    while raft.has_ready():
        raft.advance(raft.ready())


def test_ready_twice_without_advance_raises_and_hands_out_nothing_twice() -> None:
    raft = make_raft()
    ready = raft.ready()
    with pytest.raises(ReadyMisuse):
        raft.ready()
    assert not raft.has_ready()  # nothing is handed out while a Ready is in flight
    raft.advance(ready)
    raft.advance(raft.ready())  # after advance, ready() works again


def test_advance_without_ready_raises() -> None:
    raft = make_raft()
    with pytest.raises(ReadyMisuse):
        raft.advance(Ready(None, None, None, [], [], []))
    ready = raft.ready()
    raft.advance(ready)
    with pytest.raises(ReadyMisuse):
        raft.advance(ready)  # the same Ready twice
    assert isinstance(ReadyMisuse("x"), RaftError)


def test_fresh_follower_has_nothing_ready() -> None:
    raft = make_raft()
    assert not raft.has_ready()
    ready = raft.ready()
    assert ready.hard_state is None
    assert ready.soft_state is None
    assert ready.entries == [] and ready.committed_entries == [] and ready.messages == []
    assert not ready.must_sync
    raft.advance(ready)


def test_must_sync() -> None:
    entry = Entry(1, 1, EntryType.NORMAL, b"x")
    msg = AppendResponse(frm="n2", to="n1", term=1, index=1)
    snapshot = Snapshot(SnapshotMeta(3, 1, ConfState(VOTERS)), b"")
    assert not Ready(None, None, None, [], [], []).must_sync
    assert not Ready(SoftState("n1", Role.FOLLOWER), None, None, [], [], [msg]).must_sync
    assert not Ready(None, None, None, [], [entry], []).must_sync  # applying needs no fsync
    assert Ready(None, None, None, [entry], [], []).must_sync
    assert Ready(None, HardState(1, "n1", 0), None, [], [], []).must_sync
    commit_only = Ready(None, HardState(1, "n1", 4), None, [], [], [], commit_only=True)
    assert not commit_only.must_sync
    assert Ready(None, None, snapshot, [], [], []).must_sync


def test_single_voter_commits_its_noop_only_once_durable() -> None:
    raft = make_raft("n1", ("n1",))
    assert raft.role is Role.LEADER
    assert raft.term == 1
    ready = raft.ready()
    assert ready.must_sync
    assert ready.hard_state == HardState(1, "n1", 0)
    assert ready.soft_state == SoftState("n1", Role.LEADER)
    assert [(e.index, e.term, e.type) for e in ready.entries] == [(1, 1, EntryType.NOOP)]
    assert ready.committed_entries == []  # not durable yet: cannot count itself
    assert raft.log.committed == 0
    raft.advance(ready)
    assert raft.log.committed == 1
    ready = raft.ready()
    assert ready.hard_state == HardState(1, "n1", 1)
    assert ready.commit_only  # only the commit index moved: written, but needs no fsync
    assert not ready.must_sync
    assert ready.entries == []
    assert [e.index for e in ready.committed_entries] == [1]
    raft.advance(ready)
    assert raft.log.applied == 1
    assert not raft.has_ready()


def test_single_voter_proposal_commits_after_advance() -> None:
    raft = make_raft("n1", ("n1",))
    drain(raft)
    index = raft.propose(b"k=v")
    assert index == 2
    ready = raft.ready()
    assert [e.data for e in ready.entries] == [b"k=v"]
    assert raft.log.committed == 1
    raft.advance(ready)
    assert raft.log.committed == 2
    ready = raft.ready()
    assert [e.data for e in ready.committed_entries] == [b"k=v"]
    raft.advance(ready)
    assert raft.log.applied == 2


def test_step_and_tick_are_allowed_while_a_ready_is_in_flight() -> None:
    raft = make_raft()
    first = raft.ready()
    raft.tick()
    raft.step(
        AppendEntries(
            frm="n1",
            to="n2",
            term=1,
            prev_index=0,
            prev_term=0,
            entries=(Entry(1, 1, EntryType.NOOP), Entry(2, 1, EntryType.NORMAL, b"a=1")),
            commit=1,
        )
    )
    assert not raft.has_ready()
    raft.advance(first)
    assert raft.has_ready()
    ready = raft.ready()
    assert ready.must_sync
    assert [e.index for e in ready.entries] == [1, 2]
    assert [e.index for e in ready.committed_entries] == [1]
    assert ready.hard_state == HardState(1, None, 1)
    assert ready.soft_state == SoftState("n1", Role.FOLLOWER)
    assert ready.messages == [AppendResponse(frm="n2", to="n1", term=1, index=2)]
    raft.advance(ready)
    assert raft.log.stable == 2
    assert raft.log.applied == 1
    assert not raft.has_ready()


def test_advance_ignores_entries_replaced_while_the_ready_was_in_flight() -> None:
    raft = make_raft()
    raft.step(
        AppendEntries(
            frm="n1",
            to="n2",
            term=1,
            prev_index=0,
            prev_term=0,
            entries=(Entry(1, 1), Entry(2, 1)),
            commit=0,
        )
    )
    ready = raft.ready()
    # A new leader overwrites entry 2 before the first write completes.
    raft.step(
        AppendEntries(
            frm="n3",
            to="n2",
            term=2,
            prev_index=1,
            prev_term=1,
            entries=(Entry(2, 2),),
            commit=0,
        )
    )
    raft.advance(ready)
    assert raft.log.stable < 2  # (2, term 1) was persisted, but (2, term 2) was not
    ready = raft.ready()
    assert ready.entries[-1] == Entry(2, 2)  # handed out again (entry 1 may be rewritten too)
    assert ready.entries[0].index == raft.log.stable + 1
    raft.advance(ready)
    assert raft.log.stable == 2


def test_hard_and_soft_state_are_handed_out_only_when_they_change() -> None:
    raft = make_raft()
    raft.step(
        AppendEntries(frm="n1", to="n2", term=3, prev_index=0, prev_term=0, entries=(), commit=0)
    )
    ready = raft.ready()
    assert ready.hard_state == HardState(3, None, 0)
    assert ready.soft_state == SoftState("n1", Role.FOLLOWER)
    raft.advance(ready)
    raft.step(
        AppendEntries(frm="n1", to="n2", term=3, prev_index=0, prev_term=0, entries=(), commit=0)
    )
    ready = raft.ready()
    assert ready.hard_state is None
    assert ready.soft_state is None
    assert not ready.must_sync
    assert len(ready.messages) == 1
    raft.advance(ready)


def test_entries_proposed_while_a_ready_is_in_flight_are_not_counted_as_durable() -> None:
    raft = make_raft("n1", ("n1",))
    drain(raft)
    raft.propose(b"a=1")
    first = raft.ready()
    raft.propose(b"b=2")  # appended after the Ready was taken: not part of its write
    raft.advance(first)
    assert raft.log.stable == 2
    assert raft.log.committed == 2
    second = raft.ready()
    assert [e.data for e in second.entries] == [b"b=2"]
    raft.advance(second)
    assert raft.log.committed == 3


def _three_node_leader() -> Raft:
    raft = make_raft("n1", VOTERS, pre_vote=False)
    for _ in range(30):
        raft.tick()
        if raft.role is Role.CANDIDATE:
            break
    drain(raft)
    raft.step(VoteResponse(frm="n2", to="n1", term=raft.term, granted=True))
    assert raft.role is Role.LEADER
    drain(raft)
    raft.step(AppendResponse(frm="n2", to="n1", term=raft.term, index=1))
    drain(raft)
    assert raft.log.committed == 1
    return raft


def test_leader_counts_itself_towards_a_commit_only_once_durable() -> None:
    raft = _three_node_leader()
    index = raft.propose(b"k=v")
    ready = raft.ready()
    assert ready.entries[-1].index == index
    # Sending before the write completes is allowed for a leader's appends...
    assert any(isinstance(m, AppendEntries) and m.entries for m in ready.messages)
    # ...and a follower may answer before our own write is done: one copy is not a quorum.
    raft.step(AppendResponse(frm="n2", to="n1", term=raft.term, index=index))
    assert raft.log.committed == 1
    raft.advance(ready)
    assert raft.log.committed == index

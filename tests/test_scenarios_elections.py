"""Scenario tests for Raft's election rules (Raft paper, sections 5.1, 5.2 and 5.4.1), driven one
message at a time on `Raft` objects."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from scenario_helpers import (
    VOTERS3,
    config,
    entry,
    flush,
    log_of,
    make,
    make_leader,
    memory,
    of_type,
    step,
    tick_until_campaign,
)

from raft_manager.core import (
    AppendEntries,
    AppendResponse,
    ConfState,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    Raft,
    RaftConfig,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RestoredState,
    Role,
    SnapshotAck,
    SnapshotMeta,
    TimeoutNow,
    VoteResponse,
)
from raft_manager.sim.cluster import SimCluster

# == 5.1: terms ===================================================================================

HIGHER = 5

# One well-formed message of every type, from "b" to "a" in term HIGHER.
HIGHER_TERM_MESSAGES: dict[str, Callable[[], Message]] = {
    "AppendEntries": lambda: AppendEntries(
        frm="b", to="a", term=HIGHER, prev_index=0, prev_term=0, entries=(), commit=0
    ),
    "AppendResponse": lambda: AppendResponse(frm="b", to="a", term=HIGHER, index=0),
    "Heartbeat": lambda: Heartbeat(frm="b", to="a", term=HIGHER, commit=0, round=1),
    "HeartbeatResponse": lambda: HeartbeatResponse(frm="b", to="a", term=HIGHER, round=1),
    # b's log is empty, so a (which holds an entry) refuses the vote: only the term moves.
    "RequestVote": lambda: RequestVote(frm="b", to="a", term=HIGHER, last_index=0, last_term=0),
    "VoteResponse": lambda: VoteResponse(frm="b", to="a", term=HIGHER, granted=False),
    "PreVoteRejection": lambda: VoteResponse(
        frm="b", to="a", term=HIGHER, granted=False, pre_vote=True
    ),
    "InstallSnapshot": lambda: InstallSnapshot(
        frm="b",
        to="a",
        term=HIGHER,
        meta=SnapshotMeta(1, 1, ConfState(VOTERS3)),
        offset=0,
        data=b"{}",
        done=True,
    ),
    "SnapshotAck": lambda: SnapshotAck(frm="b", to="a", term=HIGHER, snapshot_index=1, received=0),
    "TimeoutNow": lambda: TimeoutNow(frm="b", to="a", term=HIGHER),
    "ReadIndexRequest": lambda: ReadIndexRequest(frm="b", to="a", term=HIGHER, context=b"r"),
    "ReadIndexResponse": lambda: ReadIndexResponse(
        frm="b", to="a", term=HIGHER, context=b"r", index=0
    ),
}
FROM_A_LEADER = {"AppendEntries", "Heartbeat", "InstallSnapshot"}


def node_in_role(role: str) -> Raft:
    """Node a in term 2 holding entry (1, 1), as follower, candidate or leader (no check-quorum,
    so no leader stickiness: every higher-term message must move it)."""
    if role == "follower":
        raft = make("a", term=2, entries=[entry(1, 1)])
    elif role == "candidate":
        raft = make("a", term=1, entries=[entry(1, 1)])
        tick_until_campaign(raft)
    else:
        raft = make_leader("a", term=1, entries=[entry(1, 1)])
    flush(raft)
    assert raft.term == 2
    assert raft.role.value == role
    return raft


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
@pytest.mark.parametrize("kind", sorted(HIGHER_TERM_MESSAGES))
def test_higher_term_message_of_any_type_makes_node_adopt_term_and_follow(
    role: str, kind: str
) -> None:
    raft = node_in_role(role)
    raft.step(HIGHER_TERM_MESSAGES[kind]())
    assert raft.term == HIGHER
    assert raft.role is Role.FOLLOWER
    assert raft.vote is None
    assert raft.leader == ("b" if kind in FROM_A_LEADER else None)
    ready = flush(raft)
    assert ready.hard_state is not None
    assert ready.hard_state.term == HIGHER  # the new term is persisted
    assert ready.soft_state is not None or role == "follower"


def test_pre_vote_request_does_not_raise_the_voters_term() -> None:
    raft = make("a", term=2, vote="b", entries=[entry(1, 1)], pre_vote=True)
    flush(raft)
    replies = step(
        raft, RequestVote(frm="c", to="a", term=3, last_index=1, last_term=1, pre_vote=True)
    )
    # The pre-vote is granted, echoing the term c would campaign in...
    assert replies == [VoteResponse(frm="a", to="c", term=3, granted=True, pre_vote=True)]
    # ...but a neither raises its term nor changes its vote: nothing new to persist.
    assert (raft.term, raft.vote, raft.role) == (2, "b", Role.FOLLOWER)
    assert flush(raft).hard_state is None


def test_granted_pre_vote_response_does_not_raise_the_term() -> None:
    raft = make("a", term=2, entries=[entry(1, 1)], pre_vote=True)
    raft.step(VoteResponse(frm="b", to="a", term=3, granted=True, pre_vote=True))
    assert (raft.term, raft.role) == (2, Role.FOLLOWER)
    assert flush(raft).hard_state is None


@pytest.mark.parametrize("pre_vote", [False, True])
def test_vote_request_ignored_by_follower_within_leader_stickiness(pre_vote: bool) -> None:
    raft = make("a", term=2, entries=[entry(1, 1)], check_quorum=True, pre_vote=True)
    step(raft, Heartbeat(frm="b", to="a", term=2, commit=0, round=1))
    request = RequestVote(frm="c", to="a", term=3, last_index=1, last_term=1, pre_vote=pre_vote)
    assert step(raft, request) == []  # not even a refusal
    assert (raft.term, raft.vote, raft.leader) == (2, None, "b")
    # Once an election timeout passes without a word from the leader, the request is honoured.
    for _ in range(raft.config.election_tick):
        raft.tick()
    flush(raft)
    replies = of_type(step(raft, request), VoteResponse)
    assert [r.granted for r in replies] == [True]
    assert raft.term == (2 if pre_vote else 3)


def test_vote_request_ignored_by_leader_with_check_quorum() -> None:
    raft = make_leader("a", term=1, entries=[entry(1, 1)], check_quorum=True)
    request = RequestVote(frm="b", to="a", term=3, last_index=5, last_term=2)
    assert step(raft, request) == []
    assert (raft.term, raft.role) == (2, Role.LEADER)


def test_transfer_vote_request_bypasses_leader_stickiness() -> None:
    raft = make("a", term=2, entries=[entry(1, 1)], check_quorum=True)
    step(raft, Heartbeat(frm="b", to="a", term=2, commit=0, round=1))
    request = RequestVote(frm="c", to="a", term=3, last_index=1, last_term=1, transfer=True)
    assert step(raft, request) == [VoteResponse(frm="a", to="c", term=3, granted=True)]
    assert (raft.term, raft.vote) == (3, "c")


STALE = 3  # the node below is in term 5


def stale_messages() -> dict[str, Message]:
    snapshot_meta = SnapshotMeta(2, 3, ConfState(VOTERS3))
    return {
        "RequestVote": RequestVote(frm="b", to="a", term=STALE, last_index=9, last_term=STALE),
        "VoteResponse": VoteResponse(frm="b", to="a", term=STALE, granted=True),
        "AppendResponse": AppendResponse(frm="b", to="a", term=STALE, index=1),
        "HeartbeatResponse": HeartbeatResponse(frm="b", to="a", term=STALE, round=1),
        "InstallSnapshot": InstallSnapshot(
            frm="b", to="a", term=STALE, meta=snapshot_meta, offset=0, data=b"{}", done=True
        ),
        "SnapshotAck": SnapshotAck(frm="b", to="a", term=STALE, snapshot_index=2, received=0),
        "TimeoutNow": TimeoutNow(frm="b", to="a", term=STALE),
        "ReadIndexRequest": ReadIndexRequest(frm="b", to="a", term=STALE, context=b"r"),
        "ReadIndexResponse": ReadIndexResponse(frm="b", to="a", term=STALE, context=b"r", index=1),
    }


def term5_follower(**overrides: object) -> Raft:
    raft = make("a", term=5, vote="c", entries=[entry(1, 1)], **overrides)  # type: ignore[arg-type]
    flush(raft)
    return raft


@pytest.mark.parametrize("kind", sorted(stale_messages()))
def test_lower_term_message_is_ignored(kind: str) -> None:
    raft = term5_follower(check_quorum=True, pre_vote=True)
    assert step(raft, stale_messages()[kind]) == []
    assert (raft.term, raft.vote, raft.role, raft.leader) == (5, "c", Role.FOLLOWER, None)
    assert (raft.log.last_index, raft.log.committed) == (1, 0)
    ready = flush(raft)
    assert ready.hard_state is None
    assert (ready.read_states, ready.failed_reads, ready.snapshot) == ([], [], None)


@pytest.mark.parametrize(
    ("check_quorum", "pre_vote"), [(False, False), (True, False), (False, True), (True, True)]
)
@pytest.mark.parametrize("kind", ["AppendEntries", "Heartbeat"])
def test_stale_append_or_heartbeat_answered_with_current_term_iff_check_quorum_or_pre_vote(
    kind: str, check_quorum: bool, pre_vote: bool
) -> None:
    raft = term5_follower(check_quorum=check_quorum, pre_vote=pre_vote)
    msg: Message
    if kind == "AppendEntries":
        msg = AppendEntries(
            frm="b",
            to="a",
            term=STALE,
            prev_index=1,
            prev_term=1,
            entries=(entry(2, STALE),),
            commit=2,
        )
    else:
        msg = Heartbeat(frm="b", to="a", term=STALE, commit=1, round=4)
    replies = step(raft, msg)
    expected = [AppendResponse(frm="a", to="b", term=5, index=0)]
    assert replies == (expected if check_quorum or pre_vote else [])
    # The stale leader changed nothing: no entry appended, no commit, not accepted as leader.
    assert (raft.term, raft.leader, raft.log.last_index, raft.log.committed) == (5, None, 1, 0)


def test_stale_pre_vote_request_is_refused_with_current_term() -> None:
    raft = term5_follower(pre_vote=True)
    request = RequestVote(frm="b", to="a", term=4, last_index=9, last_term=4, pre_vote=True)
    assert step(raft, request) == [
        VoteResponse(frm="a", to="b", term=5, granted=False, pre_vote=True)
    ]
    assert raft.term == 5


def test_stale_leader_steps_down_when_told_the_current_term() -> None:
    # b leads term 3; a moved on to term 5 (say it lost contact and campaigned).
    old_leader = make_leader("b", term=2, entries=[entry(1, 1)], check_quorum=True)
    assert old_leader.term == 3
    a = term5_follower(check_quorum=True)
    old_leader.tick()
    heartbeats = [m for m in flush(old_leader).messages if m.to == "a"]
    assert [type(m) for m in heartbeats] == [Heartbeat]
    (answer,) = step(a, heartbeats[0])
    assert answer.term == 5
    old_leader.step(answer)
    assert (old_leader.term, old_leader.role) == (5, Role.FOLLOWER)


# == 5.2: at most one vote per term ==============================================================


def vote_request(frm: str, term: int, last_index: int = 0, last_term: int = 0) -> RequestVote:
    return RequestVote(frm=frm, to="a", term=term, last_index=last_index, last_term=last_term)


def granted(replies: list[Message]) -> list[bool]:
    return [r.granted for r in of_type(replies, VoteResponse)]


def test_one_vote_per_term_idempotent_for_same_candidate_and_durable_across_restart() -> None:
    raft = make("a", term=1)
    flush(raft)
    raft.step(vote_request("b", 2))
    ready = flush(raft)
    assert granted(ready.messages) == [True]
    assert ready.hard_state == HardState(2, "b", 0)  # the vote is persisted with the grant

    assert granted(step(raft, vote_request("c", 2))) == [False]
    assert granted(step(raft, vote_request("b", 2))) == [True]  # a retransmission: same answer
    assert raft.vote == "b"

    # Crash and restart from what was persisted: the vote holds.
    restarted = Raft(
        RaftConfig(id="a", voters=VOTERS3, pre_vote=False, check_quorum=False),
        random.Random(7),
        RestoredState(ready.hard_state, None, []),
    )
    assert granted(step(restarted, vote_request("c", 2))) == [False]
    assert granted(step(restarted, vote_request("b", 2))) == [True]
    # A new term brings a new vote.
    assert granted(step(restarted, vote_request("c", 3))) == [True]
    assert restarted.vote == "c"


def test_candidate_votes_for_itself_and_refuses_others_in_its_term() -> None:
    raft = make("a", term=1)
    tick_until_campaign(raft)
    ready = flush(raft)
    assert ready.hard_state == HardState(2, "a", 0)
    assert granted(step(raft, vote_request("b", 2))) == [False]
    assert raft.role is Role.CANDIDATE


# == 5.4.1: election restriction ==================================================================


@pytest.mark.parametrize(
    ("last_term", "last_index", "expected"),
    [
        pytest.param(0, 0, False, id="empty-log"),
        pytest.param(1, 5, False, id="lower-last-term-longer-log"),
        pytest.param(2, 2, False, id="same-last-term-shorter-log"),
        pytest.param(2, 3, True, id="equal"),
        pytest.param(2, 4, True, id="same-last-term-longer-log"),
        pytest.param(3, 1, True, id="higher-last-term-shorter-log"),
    ],
)
def test_vote_granted_only_to_candidate_with_log_at_least_as_up_to_date(
    last_term: int, last_index: int, expected: bool
) -> None:
    voter = make("a", term=2, entries=log_of([1, 1, 2]))  # last (term 2, index 3)
    flush(voter)
    replies = step(voter, vote_request("b", 4, last_index, last_term))
    assert granted(replies) == [expected]
    assert voter.term == 4  # the term moves either way
    assert voter.vote == ("b" if expected else None)


# == 5.2: a candidate that hears from the leader of its term steps back ==========================


def append_from_b(term: int) -> AppendEntries:
    return AppendEntries(
        frm="b", to="a", term=term, prev_index=1, prev_term=1, entries=(entry(2, term),), commit=1
    )


def test_candidate_becomes_follower_on_append_entries_of_its_own_term() -> None:
    raft = make("a", term=1, entries=[entry(1, 1)])
    tick_until_campaign(raft)
    flush(raft)
    assert (raft.role, raft.term, raft.vote) == (Role.CANDIDATE, 2, "a")
    replies = step(raft, append_from_b(2))
    assert (raft.role, raft.term, raft.leader) == (Role.FOLLOWER, 2, "b")
    assert raft.vote == "a"  # stepping back within the term keeps the vote it cast
    assert replies == [AppendResponse(frm="a", to="b", term=2, index=2)]
    assert raft.log.last_index == 2


def test_pre_candidate_becomes_follower_on_append_entries_of_its_own_term() -> None:
    raft = make("a", term=1, entries=[entry(1, 1)], pre_vote=True)
    tick_until_campaign(raft)
    flush(raft)
    assert (raft.role, raft.term) == (Role.PRE_CANDIDATE, 1)
    replies = step(raft, append_from_b(1))
    assert (raft.role, raft.term, raft.leader) == (Role.FOLLOWER, 1, "b")
    assert replies == [AppendResponse(frm="a", to="b", term=1, index=2)]


def test_candidate_becomes_follower_on_heartbeat_of_its_own_term() -> None:
    raft = make("a", term=1, entries=[entry(1, 1)])
    tick_until_campaign(raft)
    flush(raft)
    step(raft, Heartbeat(frm="b", to="a", term=2, commit=0, round=1))
    assert (raft.role, raft.term, raft.leader) == (Role.FOLLOWER, 2, "b")


# == single-node cluster ==========================================================================


def test_single_node_cluster_leads_at_once_and_commits_after_one_ready_round() -> None:
    raft = Raft(RaftConfig(id="a", voters=("a",)), random.Random(1))
    assert (raft.role, raft.term, raft.leader) == (Role.LEADER, 1, "a")  # no tick needed
    first = flush(raft)
    assert first.hard_state == HardState(1, "a", 0)
    assert [(e.index, e.type) for e in first.entries] == [(1, EntryType.NOOP)]
    assert raft.log.committed == 1  # the no-op commits once durable

    index = raft.propose(b"x=1")
    assert index == 2
    round_ = flush(raft)
    assert [e.data for e in round_.entries] == [b"x=1"]
    assert raft.log.committed == index  # committed after this one ready/advance round
    applied = flush(raft)
    assert [e.data for e in applied.committed_entries] == [b"x=1"]
    assert applied.messages == []


def test_single_node_sim_cluster_applies_proposal_without_ticks() -> None:
    cluster = SimCluster(1, seed=3)
    node = cluster.nodes["n1"]
    assert node.core().role is Role.LEADER
    index = cluster.put("n1", "k", "v")
    assert index is not None
    assert memory(node) == {"k": "v"}
    assert node.applied == index
    assert cluster.now == 0


class _LowestDraw(random.Random):
    """An RNG whose every randomized election timeout is the shortest one allowed."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        return start


def test_the_shortest_election_timeout_outlasts_the_other_followers_lease() -> None:
    """Regression (the bench's failover trials: about one in three took a second election
    round). b and c hear the leader's last heartbeat at the same moment, then the leader dies;
    b ticks just before c. A timeout drawn as exactly election_tick fired while c, one tick
    behind, still counted the leader as live and ignored b's pre-vote, costing a whole round.
    Drawn strictly above election_tick, b asks only once c's lease has run out."""
    settings = {"pre_vote": True, "check_quorum": True}
    b, c = (
        Raft(
            config(node, **settings), _LowestDraw(), RestoredState(HardState(1, None, 0), None, [])
        )
        for node in ("b", "c")
    )
    for node in (b, c):
        for _ in range(node.config.election_tick):  # past the start-up lease
            node.tick()
        step(node, Heartbeat(frm="a", to=node.id, term=1, commit=0, round=1))
    for _ in range(3 * b.config.election_tick):
        b.tick()
        asks = [m for m in flush(b).messages if isinstance(m, RequestVote) and m.to == "c"]
        if asks:
            answers = step(c, asks[0])
            assert [(m.granted, m.pre_vote) for m in of_type(answers, VoteResponse)] == [
                (True, True)
            ], "c ignored b's pre-vote: still in the dead leader's lease"
            return
        c.tick()
        flush(c)
    raise AssertionError("b never campaigned")

"""Unit tests for majority arithmetic (quorum.py) and the read-round tracker (read_only.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft_manager.core.quorum import VoteResult, majority, quorum_value, vote_result
from raft_manager.core.read_only import MAX_ROUNDS_KEPT, PendingRead, ReadTracker

# -- majority / quorum_value ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voters", "expected"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)]
)
def test_majority(voters: int, expected: int) -> None:
    assert majority(voters) == expected


def test_quorum_value_of_no_voters_is_zero() -> None:
    assert quorum_value([]) == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7], 7),
        ([7, 3], 3),
        ([1, 5, 3], 3),
        ([9, 9, 0], 9),
        ([4, 3, 2, 1], 2),
        ([5, 5, 5, 0], 5),
        ([10, 0, 0, 10, 10], 10),
        ([1, 2, 3, 4, 5], 3),
        ([6, 5, 4, 3, 2, 1], 3),
        ([0, 0, 0, 7, 7, 7], 0),
        ([7, 6, 5, 4, 3, 2, 1], 4),
        ([1, 1, 1, 9, 9, 9, 9], 9),
    ],
)
def test_quorum_value_examples(values: list[int], expected: int) -> None:
    assert quorum_value(values) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=7))
def test_quorum_value_is_the_largest_value_a_majority_reaches(values: list[int]) -> None:
    need = len(values) // 2 + 1
    expected = max(v for v in values if sum(1 for w in values if w >= v) >= need)
    assert quorum_value(values) == expected
    assert quorum_value(list(reversed(values))) == expected  # order does not matter


# -- vote_result ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voters", "votes", "expected"),
    [
        (("a",), {"a": True}, VoteResult.WON),
        (("a",), {}, VoteResult.PENDING),
        (("a",), {"a": False}, VoteResult.LOST),
        (("a", "b"), {"a": True}, VoteResult.PENDING),
        (("a", "b"), {"a": True, "b": False}, VoteResult.LOST),
        (("a", "b", "c"), {"a": True}, VoteResult.PENDING),
        (("a", "b", "c"), {"a": True, "b": True}, VoteResult.WON),
        (("a", "b", "c"), {"a": True, "b": False}, VoteResult.PENDING),
        (("a", "b", "c"), {"a": True, "b": False, "c": False}, VoteResult.LOST),
        (("a", "b", "c", "d"), {"a": True, "b": True}, VoteResult.PENDING),
        (("a", "b", "c", "d"), {"a": True, "b": False, "c": False}, VoteResult.LOST),
        (("a", "b", "c", "d", "e"), {"a": True, "b": True, "c": True}, VoteResult.WON),
        (("a", "b", "c", "d", "e"), {"a": True, "d": False, "e": False}, VoteResult.PENDING),
        (("a", "b", "c", "d", "e"), {"c": False, "d": False, "e": False}, VoteResult.LOST),
        # Votes from non-voters (learners, strangers) do not count.
        (("a", "b", "c"), {"a": True, "x": True, "y": True}, VoteResult.PENDING),
        (("a", "b", "c"), {"a": True, "x": False, "y": False}, VoteResult.PENDING),
    ],
)
def test_vote_result(voters: tuple[str, ...], votes: dict[str, bool], expected: VoteResult) -> None:
    assert vote_result(voters, votes) is expected


# -- ReadTracker ---------------------------------------------------------------------------------

VOTERS = ("a", "b", "c")


def test_rounds_count_up_and_remember_when_they_were_sent() -> None:
    tracker = ReadTracker()
    assert tracker.round == 0
    assert tracker.new_round(5) == 1
    assert tracker.new_round(7) == 2
    assert tracker.round == 2
    # Only the leader has "answered" its latest round: no quorum in a 3-voter cluster.
    assert tracker.quorum_round(VOTERS, "a") == 0


def test_quorum_round_counts_the_leader_for_its_latest_round() -> None:
    tracker = ReadTracker()
    tracker.new_round(0)
    tracker.new_round(1)
    tracker.ack("b", 1)
    assert tracker.quorum_round(VOTERS, "a") == 1
    tracker.ack("c", 2)
    assert tracker.quorum_round(VOTERS, "a") == 2
    assert tracker.quorum_round(("a",), "a") == 2  # a sole voter is its own quorum


def test_ack_ignores_old_and_future_rounds_and_strangers_do_not_count() -> None:
    tracker = ReadTracker()
    for tick in range(3):
        tracker.new_round(tick)
    tracker.ack("b", 2)
    tracker.ack("b", 1)  # older than what b already answered
    tracker.ack("c", 9)  # a round never sent
    tracker.ack("zz", 3)
    assert tracker.quorum_round(VOTERS, "a") == 2
    tracker.ack("b", 3)
    assert tracker.quorum_round(VOTERS, "a") == 3


def test_reads_wait_for_a_round_sent_after_they_arrived() -> None:
    tracker = ReadTracker()
    tracker.new_round(0)
    tracker.ack("b", 1)
    tracker.add(10, b"r1", None)
    assert tracker.release(tracker.quorum_round(VOTERS, "a")) == []  # round 1 predates it
    tracker.new_round(3)
    assert tracker.release(tracker.quorum_round(VOTERS, "a")) == []  # round 2 not acked yet
    tracker.ack("c", 2)
    assert tracker.release(tracker.quorum_round(VOTERS, "a")) == [PendingRead(2, 10, b"r1", None)]
    assert tracker.release(2) == []


def test_release_is_in_arrival_order_and_stops_at_the_quorum_round() -> None:
    tracker = ReadTracker()
    tracker.add(4, b"first", None)
    tracker.add(4, b"second", "b")
    tracker.new_round(0)  # round 1 covers both
    tracker.add(6, b"third", None)
    tracker.new_round(1)  # round 2
    tracker.add(7, b"fourth", "c")
    assert [r.context for r in tracker.release(1)] == [b"first", b"second"]
    assert [r.context for r in tracker.release(3)] == [b"third", b"fourth"]
    assert tracker.release(10) == []


def test_reset_hands_back_every_pending_read_and_forgets_acks() -> None:
    tracker = ReadTracker()
    tracker.new_round(0)
    tracker.ack("b", 1)
    tracker.add(3, b"x", None)
    tracker.add(3, b"y", "c")
    dropped = tracker.reset()
    assert [r.context for r in dropped] == [b"x", b"y"]
    assert tracker.quorum_round(VOTERS, "a") == 0
    assert tracker.release(100) == []
    assert not tracker.lease_holds(1, 0, 10)


def test_lease_holds_boundaries() -> None:
    tracker = ReadTracker()
    tracker.new_round(100)  # round 1 sent at tick 100
    assert not tracker.lease_holds(0, 100, 9)  # no quorum round: no lease
    assert tracker.lease_holds(1, 100, 9)
    assert tracker.lease_holds(1, 108, 9)
    assert not tracker.lease_holds(1, 109, 9)  # the lease ends at sent + lease_ticks, exclusive
    assert not tracker.lease_holds(1, 200, 9)
    assert not tracker.lease_holds(2, 100, 9)  # a round never sent
    assert not tracker.lease_holds(1, 100, 0)


def test_lease_is_measured_from_the_quorum_round_not_the_latest() -> None:
    tracker = ReadTracker()
    tracker.new_round(10)
    tracker.new_round(18)
    tracker.ack("b", 1)
    quorum_round = tracker.quorum_round(VOTERS, "a")
    assert quorum_round == 1
    assert not tracker.lease_holds(quorum_round, 19, 9)  # 10 + 9 = 19: expired
    tracker.ack("c", 2)
    assert tracker.lease_holds(tracker.quorum_round(VOTERS, "a"), 19, 9)


def test_release_forgets_rounds_older_than_the_quorum_round() -> None:
    tracker = ReadTracker()
    tracker.new_round(1)
    tracker.new_round(2)
    tracker.release(2)
    assert not tracker.lease_holds(1, 1, 100)
    assert tracker.lease_holds(2, 2, 100)


def test_an_unanswered_leader_remembers_a_bounded_number_of_rounds() -> None:
    tracker = ReadTracker()
    for tick in range(MAX_ROUNDS_KEPT + 100):
        tracker.new_round(tick)
    last = tracker.round
    # The oldest rounds are forgotten, which can only deny a lease (the safe direction).
    assert not tracker.lease_holds(1, last, 10**9)
    assert tracker.lease_holds(last, last - 1, 10)

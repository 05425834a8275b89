"""Unit tests for the invariant Checker: it must accept a correct history and catch each kind of
violation, raising InvariantViolation with the right invariant name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raft_manager.core import ConfState, Entry, EntryType, Snapshot, SnapshotMeta
from raft_manager.sim.invariants import Checker, InvariantViolation
from raft_manager.sim.kv import encode_put

VOTERS = ("n1", "n2", "n3")


def put(index: int, term: int, key: str, value: str) -> Entry:
    return Entry(index, term, EntryType.NORMAL, encode_put(key, value))


def noop(index: int, term: int) -> Entry:
    return Entry(index, term, EntryType.NOOP)


def snapshot_at(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(VOTERS)), b"{}")


def violation(invariant: str, action: Callable[[], object]) -> InvariantViolation:
    with pytest.raises(InvariantViolation) as info:
        action()
    assert info.value.invariant == invariant, info.value
    assert str(info.value).startswith(f"{invariant}: ")
    return info.value


TERM1 = [noop(1, 1), put(2, 1, "a", "1"), put(3, 1, "b", "1")]


def committed_checker(voters: tuple[str, ...] = VOTERS) -> Checker:
    """n1 led term 1; n1 and n2 hold TERM1 durably and n1 committed all of it."""
    checker = Checker(voters)
    checker.on_leader("n1", 1)
    checker.on_persist("n1", TERM1, None, True)
    checker.on_persist("n2", TERM1, None, False)
    checker.on_commit("n1", 3, TERM1, 0)
    return checker


# -- a correct history ---------------------------------------------------------------------------


def test_a_correct_history_is_accepted() -> None:
    checker = Checker(VOTERS)
    checker.on_leader("n1", 1)
    checker.on_persist("n1", TERM1[:1], None, True)
    checker.on_persist("n1", TERM1[1:], None, True)  # a leader appending at its end is fine
    checker.on_persist("n2", TERM1, None, False)
    checker.on_persist("n3", TERM1[:2], None, False)
    checker.on_commit("n1", 3, TERM1, 0)
    assert checker.commit_index == 3
    for entry in TERM1:
        checker.on_apply("n1", entry)
        checker.on_apply("n2", entry)
    checker.on_commit("n2", 3, TERM1, 0)  # a follower learning an already known commit
    checker.on_commit("n3", 2, TERM1[:2], 0)
    checker.on_read("n1", "a", 3, 3, 3, "1")
    checker.on_read("n2", "b", 2, 3, 3, "1")
    checker.on_read("n1", "zz", 0, 3, 3, None)  # a key never written reads as absent

    # Term 2: n2 (which holds the committed prefix) leads; n3 overwrites its uncommitted tail.
    checker.on_leader("n2", 2)
    checker.on_leader("n2", 2)  # the same leader reported twice is not two leaders
    term2 = [noop(4, 2), put(5, 2, "a", "2")]
    checker.on_persist("n2", term2, None, True)
    checker.on_persist("n3", [TERM1[2], *term2], None, False)
    checker.on_commit("n2", 5, [*TERM1, *term2], 0)
    assert checker.value_at("a", 4) == "1"
    assert checker.value_at("a", 5) == "2"
    assert checker.value_at("b", 1) is None
    checker.on_read("n2", "a", 5, 5, 5, "2")

    # Compaction and snapshot installation of committed prefixes.
    checker.on_compact("n2", snapshot_at(4, 2))
    checker.on_persist("n1", [], snapshot_at(4, 2), False)
    checker.on_restore("n1", snapshot_at(4, 2))
    checker.on_persist("n1", term2[1:], None, False)
    checker.on_apply("n1", term2[1])
    checker.on_commit("n1", 5, term2[1:], 4)


def test_followers_may_overwrite_their_uncommitted_tail() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n3", [put(1, 1, "a", "x"), put(2, 1, "a", "y")], None, False)
    checker.on_persist("n3", [put(2, 2, "a", "z")], None, False)
    assert checker.shadows["n3"].last_index == 2


# -- each violation is detected ------------------------------------------------------------------


def test_two_leaders_in_one_term() -> None:
    checker = Checker(VOTERS)
    checker.on_leader("n1", 4)
    checker.on_leader("n2", 5)
    found = violation("Election Safety", lambda: checker.on_leader("n3", 4))
    assert "n1" in found.detail and "n3" in found.detail


def test_same_index_and_term_with_another_entry() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n1", [put(1, 1, "a", "1")], None, False)
    violation("Log Matching", lambda: checker.on_persist("n2", [put(1, 1, "a", "2")], None, False))


def test_same_index_and_term_with_another_prefix() -> None:
    """Entries (2, term 2) are identical, but the logs differ before them."""
    checker = Checker(VOTERS)
    checker.on_persist("n1", [put(1, 1, "a", "1"), put(2, 2, "b", "1")], None, False)
    checker.on_persist("n2", [put(1, 2, "a", "1")], None, False)  # another term: allowed
    violation("Log Matching", lambda: checker.on_persist("n2", [put(2, 2, "b", "1")], None, False))


def test_snapshot_of_an_entry_nobody_ever_held() -> None:
    checker = committed_checker()
    violation("Log Matching", lambda: checker.on_persist("n3", [], snapshot_at(2, 7), False))


def test_leader_overwriting_its_own_log() -> None:
    checker = Checker(VOTERS)
    checker.on_leader("n1", 1)
    checker.on_persist("n1", [noop(1, 1), put(2, 1, "a", "1")], None, True)
    violation(
        "Leader Append-Only",
        lambda: checker.on_persist("n1", [put(2, 1, "a", "1")], None, True),
    )


def test_applying_an_uncommitted_entry() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n1", TERM1, None, True)
    checker.on_persist("n2", TERM1, None, False)
    checker.on_commit("n1", 1, TERM1, 0)
    checker.on_apply("n1", TERM1[0])
    violation("State Machine Safety", lambda: checker.on_apply("n1", TERM1[1]))


def test_applying_an_entry_other_than_the_committed_one() -> None:
    checker = committed_checker()
    checker.on_persist("n3", [noop(1, 1), put(2, 2, "a", "evil")], None, False)
    violation("State Machine Safety", lambda: checker.on_apply("n3", put(2, 2, "a", "evil")))


def test_commit_held_by_only_a_minority() -> None:
    checker = Checker(VOTERS)
    checker.on_leader("n1", 1)
    checker.on_persist("n1", TERM1, None, True)
    checker.on_persist("n2", TERM1[:1], None, False)
    checker.on_commit("n1", 1, TERM1, 0)  # n1 and n2 hold entry 1: a majority
    found = violation("Commit Durability", lambda: checker.on_commit("n1", 2, TERM1, 0))
    assert "1 of 3" in found.detail


def test_commit_durability_in_a_five_node_cluster() -> None:
    voters = ("n1", "n2", "n3", "n4", "n5")
    checker = Checker(voters)
    for node in ("n1", "n2"):
        checker.on_persist(node, TERM1, None, node == "n1")
    violation("Commit Durability", lambda: checker.on_commit("n1", 1, TERM1, 0))
    ok = Checker(voters)
    for node in ("n1", "n2", "n4"):
        ok.on_persist(node, TERM1, None, node == "n1")
    ok.on_commit("n1", 3, TERM1, 0)


def test_committing_an_index_the_node_does_not_hold() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n1", TERM1[:1], None, True)
    checker.on_persist("n2", TERM1[:1], None, False)
    violation("State Machine Safety", lambda: checker.on_commit("n1", 2, TERM1, 0))


def test_committing_another_entry_at_a_known_index() -> None:
    checker = committed_checker()
    checker.on_persist("n3", [noop(1, 1), put(2, 2, "a", "evil")], None, False)
    violation("State Machine Safety", lambda: checker.on_commit("n3", 2, [], 0))


def test_a_new_leader_missing_a_committed_entry() -> None:
    checker = committed_checker()
    checker.on_persist("n3", TERM1[:2], None, False)
    violation("Leader Completeness", lambda: checker.on_leader("n3", 2))


def test_snapshots_of_uncommitted_state() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n1", TERM1, None, True)
    checker.on_persist("n2", TERM1, None, False)
    checker.on_commit("n1", 1, TERM1, 0)
    violation("State Machine Safety", lambda: checker.on_compact("n1", snapshot_at(2, 1)))
    violation("State Machine Safety", lambda: checker.on_restore("n3", snapshot_at(2, 1)))
    violation(
        "State Machine Safety", lambda: checker.on_persist("n3", [], snapshot_at(2, 1), False)
    )
    checker.on_compact("n1", snapshot_at(1, 1))  # the committed part is fine


def test_stale_read_below_a_commit_that_preceded_it() -> None:
    checker = Checker(VOTERS)
    log = [put(1, 1, "a", "1"), put(2, 1, "a", "2")]
    for node in ("n1", "n2"):
        checker.on_persist(node, log, None, node == "n1")
    checker.on_commit("n1", 2, log, 0)
    checker.on_read("n2", "a", 2, 2, 2, "2")
    found = violation("Linearizable Read", lambda: checker.on_read("n2", "a", 2, 1, 1, "1"))
    assert "below 2" in found.detail


def test_read_returning_a_value_the_log_does_not_give() -> None:
    checker = Checker(VOTERS)
    log = [put(1, 1, "a", "1"), put(2, 1, "a", "2")]
    for node in ("n1", "n2"):
        checker.on_persist(node, log, None, node == "n1")
    checker.on_commit("n1", 2, log, 0)
    violation("Linearizable Read", lambda: checker.on_read("n1", "a", 1, 2, 2, "1"))
    violation("Linearizable Read", lambda: checker.on_read("n1", "a", 0, 2, 2, None))
    checker.on_read("n1", "a", 1, 1, 1, "1")  # at index 1 the value was 1


def test_exactly_half_of_an_even_cluster_is_not_a_majority() -> None:
    voters = ("n1", "n2", "n3", "n4")
    checker = Checker(voters)
    for node in ("n1", "n2"):
        checker.on_persist(node, TERM1, None, node == "n1")
    violation("Commit Durability", lambda: checker.on_commit("n1", 1, TERM1, 0))
    ok = Checker(voters)
    for node in ("n1", "n2", "n3"):
        ok.on_persist(node, TERM1, None, node == "n1")
    ok.on_commit("n1", 3, TERM1, 0)

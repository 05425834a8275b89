"""Unit tests for the invariant Checker: it must accept a correct history and catch each kind of
violation, raising InvariantViolation with the right invariant name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from raft_manager.core import ConfState, Entry, EntryType, Snapshot, SnapshotMeta
from raft_manager.ledger import Ledger, encode_entry, parse_command
from raft_manager.sim.invariants import Checker, InvariantViolation

VOTERS = ("n1", "n2", "n3")


def command(
    index: int, term: int, body: dict[str, Any], session: str = "", seq: int = 0, ts: int = -1
) -> Entry:
    """A ledger entry, stamped `ts` ms (default: 100 ms per index), acknowledging below `seq`."""
    stamp = index * 100 if ts < 0 else ts
    data = encode_entry(parse_command(body), stamp, session, seq, seq)
    return Entry(index, term, EntryType.NORMAL, data)


def put(index: int, term: int, key: str, value: str) -> Entry:
    return command(index, term, {"op": "memory.put", "key": key, "value": value})


def apply(checker: Checker, node: str, ledger: Ledger, entries: Sequence[Entry]) -> None:
    """`node` applies committed `entries` to its ledger and reports them as the cluster does."""
    for entry in entries:
        checker.on_apply(node, entry)
        if entry.type is EntryType.NORMAL:
            checker.on_result(node, entry, ledger.apply(entry))


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
    checker.on_commit("n1", 3)
    return checker


# -- a correct history ---------------------------------------------------------------------------


def test_a_correct_history_is_accepted() -> None:
    checker = Checker(VOTERS)
    checker.on_leader("n1", 1)
    checker.on_persist("n1", TERM1[:1], None, True)
    checker.on_persist("n1", TERM1[1:], None, True)  # a leader appending at its end is fine
    checker.on_persist("n2", TERM1, None, False)
    checker.on_persist("n3", TERM1[:2], None, False)
    checker.on_commit("n1", 3)
    assert checker.commit_index == 3
    ledgers = {node: Ledger() for node in VOTERS}
    apply(checker, "n1", ledgers["n1"], TERM1)
    apply(checker, "n2", ledgers["n2"], TERM1)
    checker.on_commit("n2", 3)  # a follower learning an already known commit
    checker.on_commit("n3", 2)
    checker.on_read("n1", "a", 3, 3, 3, "1")
    checker.on_read("n2", "b", 2, 3, 3, "1")
    checker.on_read("n1", "zz", 0, 3, 3, None)  # a key never written reads as absent

    # Term 2: n2 (which holds the committed prefix) leads; n3 overwrites its uncommitted tail.
    checker.on_leader("n2", 2)
    checker.on_leader("n2", 2)  # the same leader reported twice is not two leaders
    term2 = [noop(4, 2), put(5, 2, "a", "2")]
    checker.on_persist("n2", term2, None, True)
    checker.on_persist("n3", [TERM1[2], *term2], None, False)
    checker.on_commit("n2", 5)
    apply(checker, "n2", ledgers["n2"], term2)
    assert checker.value_at("a", 4) == "1"
    assert checker.value_at("a", 5) == "2"
    assert checker.value_at("b", 1) is None
    checker.on_read("n2", "a", 5, 5, 5, "2")

    # Compaction and snapshot installation of committed prefixes.
    checker.on_compact("n2", snapshot_at(4, 2))
    checker.on_persist("n1", [], snapshot_at(4, 2), False)
    checker.on_restore("n1", snapshot_at(4, 2))
    checker.on_persist("n1", term2[1:], None, False)
    ledgers["n1"].restore(ledgers["n2"].snapshot())  # (the snapshot's bytes are not checked)
    apply(checker, "n1", ledgers["n1"], term2[1:])
    checker.on_commit("n1", 5)


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
    checker.on_commit("n1", 1)
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
    checker.on_commit("n1", 1)  # n1 and n2 hold entry 1: a majority
    found = violation("Commit Durability", lambda: checker.on_commit("n1", 2))
    assert "1 of 3" in found.detail


def test_commit_durability_in_a_five_node_cluster() -> None:
    voters = ("n1", "n2", "n3", "n4", "n5")
    checker = Checker(voters)
    for node in ("n1", "n2"):
        checker.on_persist(node, TERM1, None, node == "n1")
    violation("Commit Durability", lambda: checker.on_commit("n1", 1))
    ok = Checker(voters)
    for node in ("n1", "n2", "n4"):
        ok.on_persist(node, TERM1, None, node == "n1")
    ok.on_commit("n1", 3)


def test_committing_an_index_the_node_does_not_hold() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n1", TERM1[:1], None, True)
    checker.on_persist("n2", TERM1[:1], None, False)
    violation("State Machine Safety", lambda: checker.on_commit("n1", 2))


def test_committing_another_entry_at_a_known_index() -> None:
    checker = committed_checker()
    checker.on_persist("n3", [noop(1, 1), put(2, 2, "a", "evil")], None, False)
    violation("State Machine Safety", lambda: checker.on_commit("n3", 2))


def test_a_new_leader_missing_a_committed_entry() -> None:
    checker = committed_checker()
    checker.on_persist("n3", TERM1[:2], None, False)
    violation("Leader Completeness", lambda: checker.on_leader("n3", 2))


def test_snapshots_of_uncommitted_state() -> None:
    checker = Checker(VOTERS)
    checker.on_persist("n1", TERM1, None, True)
    checker.on_persist("n2", TERM1, None, False)
    checker.on_commit("n1", 1)
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
    checker.on_commit("n1", 2)
    apply(checker, "n1", Ledger(), log)
    checker.on_read("n2", "a", 2, 2, 2, "2")
    found = violation("Linearizable Read", lambda: checker.on_read("n2", "a", 2, 1, 1, "1"))
    assert "below 2" in found.detail


def test_read_returning_a_value_the_log_does_not_give() -> None:
    checker = Checker(VOTERS)
    log = [put(1, 1, "a", "1"), put(2, 1, "a", "2")]
    for node in ("n1", "n2"):
        checker.on_persist(node, log, None, node == "n1")
    checker.on_commit("n1", 2)
    apply(checker, "n1", Ledger(), log)
    violation("Linearizable Read", lambda: checker.on_read("n1", "a", 1, 2, 2, "1"))
    violation("Linearizable Read", lambda: checker.on_read("n1", "a", 0, 2, 2, None))
    checker.on_read("n1", "a", 1, 1, 1, "1")  # at index 1 the value was 1


def test_exactly_half_of_an_even_cluster_is_not_a_majority() -> None:
    voters = ("n1", "n2", "n3", "n4")
    checker = Checker(voters)
    for node in ("n1", "n2"):
        checker.on_persist(node, TERM1, None, node == "n1")
    violation("Commit Durability", lambda: checker.on_commit("n1", 1))
    ok = Checker(voters)
    for node in ("n1", "n2", "n3"):
        ok.on_persist(node, TERM1, None, node == "n1")
    ok.on_commit("n1", 3)


# -- the ledger ------------------------------------------------------------------------------------


def claim(index: int, agent: str, ts: int, seq: int = 1) -> Entry:
    body = {"op": "task.claim", "agent": agent, "lease_seconds": 1.0}
    return command(index, 1, body, agent, seq, ts)


def held(index: int, op: str, agent: str, token: int, ts: int, seq: int = 2) -> Entry:
    body = {"op": op, "task_id": "t1", "agent": agent, "token": token}
    return command(index, 1, body, agent, seq, ts)


def claimed(token: int, lease_until: int) -> dict[str, Any]:
    """The result of a claim of t1 (what the Checker reads of it)."""
    return {"ok": True, "task_id": "t1", "fencing_token": token, "lease_until": lease_until}


OK = {"ok": True}


def swarm_history() -> list[Entry]:
    """Agent a1 claims t1 (its retried claim is answered from the record), renews, lets the lease
    run out; a2 claims t1 and completes it, a1's late complete and a copy of its first claim are
    refused."""
    submit = {"op": "task.submit", "id": "t1", "payload": {"marker": "m1"}}
    return [
        command(1, 1, submit, "planner", 1, ts=1000),
        claim(2, "a1", ts=1100),  # lease until 2100
        claim(3, "a1", ts=1200),  # a retry: answered from the session record
        held(4, "task.renew", "a1", 2, ts=1500),  # lease until 2500
        command(5, 1, {"op": "clock"}, ts=2600),  # a1's lease runs out
        claim(6, "a2", ts=2700),  # a2 holds t1 under token 6
        held(7, "task.complete", "a1", 2, ts=2800, seq=3),  # refused: stale token
        claim(8, "a1", ts=2900),  # a copy of request 1, acknowledged since: stale_request
        held(9, "task.complete", "a2", 6, ts=3000),
    ]


def test_a_ledger_history_is_accepted_on_every_replica() -> None:
    checker = Checker(VOTERS)
    log = swarm_history()
    for node in VOTERS:
        checker.on_persist(node, log, None, node == "n1")
    checker.on_commit("n1", len(log))
    first, second, restored = Ledger(), Ledger(), Ledger()
    apply(checker, "n1", first, log)
    apply(checker, "n2", second, log[:4])
    restored.restore(second.snapshot())  # a replica restored from a snapshot answers the same
    apply(checker, "n3", restored, log[4:])
    checker.on_submit_acknowledged(1, "t1")
    for ledger in (first, restored):
        checker.on_tasks("n1", ledger.applied, {"t1": {"marker": "m1"}})
    assert checker.counts == {
        "task.claim": 2,
        "task.renew": 1,
        "task.complete": 1,
        "leases_expired": 1,
        "stale_holders_refused": 1,
        "retries_deduplicated": 1,
        "retries_refused_stale": 1,
        "submits_acknowledged": 1,
    }


def test_replicas_with_different_results() -> None:
    checker = Checker(VOTERS)
    entry = put(1, 1, "a", "1")
    checker.on_result("n1", entry, {"ok": True, "version": 1, "expires_at": None})
    found = violation(
        "Deterministic Apply",
        lambda: checker.on_result("n2", entry, {"ok": True, "version": 2, "expires_at": None}),
    )
    assert "n2 applied entry 1" in found.detail


def test_a_claim_while_another_lease_is_valid() -> None:
    checker = Checker(VOTERS)
    checker.on_result("n1", claim(1, "a1", ts=1000), claimed(1, 2000))
    found = violation(
        "Lease Exclusion",
        lambda: checker.on_result("n1", claim(2, "a2", ts=1999), claimed(2, 2999)),
    )
    assert "a2 claimed t1 at 1999 ms" in found.detail
    assert "a1's lease under token 1 ran until 2000 ms" in found.detail


def test_a_claim_once_the_lease_ran_out_is_fine() -> None:
    checker = Checker(VOTERS)
    checker.on_result("n1", claim(1, "a1", ts=1000), claimed(1, 2000))
    checker.on_result("n1", claim(2, "a2", ts=2000), claimed(2, 3000))
    assert checker.counts["leases_expired"] == 1


def test_a_renewed_lease_still_excludes() -> None:
    checker = Checker(VOTERS)
    checker.on_result("n1", claim(1, "a1", ts=1000), claimed(1, 2000))
    checker.on_result("n1", held(2, "task.renew", "a1", 1, ts=1900), {**OK, "lease_until": 2900})
    violation(
        "Lease Exclusion",
        lambda: checker.on_result("n1", claim(3, "a2", ts=2500), claimed(3, 3500)),
    )


def test_a_claim_after_a_completion_is_fine() -> None:
    checker = Checker(VOTERS)
    checker.on_result("n1", claim(1, "a1", ts=1000), claimed(1, 2000))
    checker.on_result("n1", held(2, "task.fail", "a1", 1, ts=1100), OK)
    checker.on_result("n1", claim(3, "a2", ts=1200), claimed(3, 2200))


@pytest.mark.parametrize("op", ["task.renew", "task.complete", "task.fail"])
def test_the_holder_acting_with_a_stale_token(op: str) -> None:
    checker = Checker(VOTERS)
    checker.on_result("n1", claim(1, "a1", ts=1000), claimed(1, 2000))
    checker.on_result("n1", claim(2, "a2", ts=2100), claimed(2, 3100))
    found = violation(
        "Lease Exclusion",
        lambda: checker.on_result("n1", held(3, op, "a1", 1, ts=2200), OK),
    )
    assert "it is held by a2 under token 2" in found.detail


def test_the_holder_acting_after_its_lease_ended() -> None:
    checker = Checker(VOTERS)
    checker.on_result("n1", claim(1, "a1", ts=1000), claimed(1, 2000))
    found = violation(
        "Lease Exclusion",
        lambda: checker.on_result("n1", held(2, "task.complete", "a1", 1, ts=2000), OK),
    )
    assert "after its lease ended at 2000 ms" in found.detail


def test_acting_on_a_task_nobody_claimed() -> None:
    checker = Checker(VOTERS)
    violation(
        "Lease Exclusion",
        lambda: checker.on_result("n1", held(1, "task.complete", "a1", 1, ts=1000), OK),
    )


def test_a_retried_request_applied_twice() -> None:
    checker = Checker(VOTERS)
    submit = {"op": "task.submit", "payload": {"marker": "m1"}}
    checker.on_result("n1", command(1, 1, submit, "planner", 1), {**OK, "task_id": "task-1"})
    checker.on_result(  # answered from the record
        "n1", command(2, 1, submit, "planner", 1), {**OK, "task_id": "task-1"}
    )
    stale = {"ok": False, "error": "stale_request", "message": "answered and acknowledged"}
    checker.on_result("n1", command(3, 1, submit, "planner", 1), stale)
    found = violation(
        "Exactly Once",
        lambda: checker.on_result(
            "n1", command(4, 1, submit, "planner", 1), {**OK, "task_id": "task-4"}
        ),
    )
    assert "request 1 of session planner was applied at 1" in found.detail


def test_two_tasks_from_one_submit() -> None:
    checker = Checker(VOTERS)
    checker.on_tasks("n1", 5, {"task-1": {"marker": "m1"}, "job-2": {"marker": "m2"}})
    found = violation(
        "Exactly Once",
        lambda: checker.on_tasks("n1", 5, {"task-1": {"marker": "m1"}, "task-4": {"marker": "m1"}}),
    )
    assert "2 tasks with payload marker m1" in found.detail


def test_an_acknowledged_submit_missing_from_a_ledger() -> None:
    checker = Checker(VOTERS)
    checker.on_submit_acknowledged(7, "task-5")
    checker.on_tasks("n2", 6, {})  # n2 has not applied the acknowledged index yet
    checker.on_tasks("n1", 7, {"task-5": None})
    found = violation("Acknowledged Submit", lambda: checker.on_tasks("n3", 9, {"task-6": None}))
    assert "n3 applied through 9 but does not hold task task-5, acknowledged at 7" in found.detail

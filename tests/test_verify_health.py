"""The hooks' cluster-health checks, judged on hand-made status rounds, and which checks a task
calls for."""

from __future__ import annotations

from typing import Any

import pytest

from raft_manager.client.cluster_view import Members
from raft_manager.verify.checks import Verdict
from raft_manager.verify.health import (
    StatusRound,
    caught_up,
    leader_known,
    no_node_lagging,
    quorum_reachable,
    single_leader,
    transfer_target_healthy,
)
from raft_manager.verify.hooks import mentions_election, mentions_replication

MEMBERS = Members({n: f"127.0.0.1:{7200 + k}" for k, n in enumerate(("n1", "n2", "n3"))}, {})
VOTERS = [{"id": n, "role": "voter"} for n in ("n1", "n2", "n3")]


def status(
    node: str, role: str = "follower", term: int = 4, applied: int = 9_876, **more: Any
) -> dict[str, Any]:
    return {
        "id": node,
        "role": role,
        "term": term,
        "commit_index": applied,
        "applied_index": applied,
        "members": VOTERS,
        **more,
    }


def round_of(*statuses: dict[str, Any]) -> StatusRound:
    return StatusRound.of(MEMBERS, {s["id"]: s for s in statuses})


HEALTHY = round_of(status("n1"), status("n2", "leader"), status("n3"))


def lines(checks: Any) -> list[str]:
    return [check.line() for check in (checks if isinstance(checks, list) else [checks])]


def test_a_healthy_round_passes_every_pre_check() -> None:
    assert lines(leader_known(HEALTHY)) == ["ok   leader n2, term 4"]
    assert lines(quorum_reachable(HEALTHY)) == ["ok   quorum: 3 of 3 voters answer"]
    assert lines(no_node_lagging(HEALTHY, 1000)) == [
        "ok   no node lags more than 1,000 entries behind commit 9,876"
    ]
    assert transfer_target_healthy(HEALTHY, 1000).line().startswith("ok   transfer target n1")


def test_a_lagging_node_fails_with_one_line_naming_it() -> None:
    state = round_of(status("n1"), status("n2", "leader"), status("n3", applied=8_672))
    assert lines(no_node_lagging(state, 1000)) == [
        "FAIL node n3 lags 1,204 entries behind commit 9,876"
    ]
    assert lines(no_node_lagging(state, 1204))[0].startswith("ok")


def test_a_silent_node_is_named_by_the_lag_check_and_fails_the_catch_up() -> None:
    # pre: work may go on with a quorum, so a silent node is named, not failed; post: every
    # node must be seen to hold the commit, and a silent one cannot be.
    state = round_of(status("n1"), status("n2", "leader"))
    assert lines(no_node_lagging(state, 1000)) == [
        "ok   no node lags more than 1,000 entries behind commit 9,876",
        "skip node n3 does not answer: its lag is unknown",
    ]
    assert lines(caught_up(state, 9_876)) == [
        "ok   caught up to the leader's commit 9,876: n1, n2",
        "FAIL node n3 does not answer: not known to hold the leader's commit 9,876",
    ]


def test_no_leader_and_no_quorum_fail() -> None:
    state = round_of(status("n1", "candidate", term=6))
    assert lines(leader_known(state)) == ["FAIL no leader known (newest term 6)"]
    assert lines(quorum_reachable(state)) == [
        "FAIL no quorum: 1 of 3 voters answer, 2 needed (silent: n2, n3)"
    ]
    assert no_node_lagging(state, 10)[0].verdict is Verdict.SKIP
    assert transfer_target_healthy(state, 10).verdict is Verdict.FAIL


def test_voters_come_from_the_leaders_member_list() -> None:
    five = [*VOTERS, {"id": "n4", "role": "voter"}, {"id": "n5", "role": "learner"}]
    state = round_of(status("n1"), status("n2", "leader", members=five))
    assert state.voters() == ["n1", "n2", "n3", "n4"]
    assert lines(quorum_reachable(state)) == [
        "FAIL no quorum: 2 of 4 voters answer, 3 needed (silent: n3, n4)"
    ]


def test_the_transfer_target_is_the_closest_voter_and_must_be_within_the_lag() -> None:
    state = round_of(
        status("n1", applied=9_000), status("n2", "leader"), status("n3", applied=9_800)
    )
    assert transfer_target_healthy(state, 100).line() == (
        "ok   transfer target n3 is healthy: 76 entries behind the leader"
    )
    assert transfer_target_healthy(state, 50).line() == (
        "FAIL no healthy transfer target: the closest voter, n3, lags 76 entries"
    )
    alone = round_of(status("n2", "leader"))
    assert "no voter besides n2 answers" in transfer_target_healthy(alone, 100).text


def test_single_leader_in_the_newest_term() -> None:
    assert single_leader(HEALTHY).line() == "ok   single leader n2 in the newest term 4"
    stale = round_of(
        status("n1", "leader", term=3), status("n2", "leader", term=5), status("n3", term=5)
    )
    assert single_leader(stale).ok  # a deposed leader of an older term does not count
    nobody = round_of(status("n1", term=5), status("n2", "candidate", term=6))
    assert single_leader(nobody).line() == "FAIL no leader in the newest term 6"
    two = round_of(status("n1", "leader"), status("n2", "leader"))
    assert single_leader(two).line() == "FAIL 2 leaders in term 4: n1, n2"


def test_caught_up_to_a_commit_index() -> None:
    assert lines(caught_up(HEALTHY, 9_876)) == [
        "ok   caught up to the leader's commit 9,876: n1, n2, n3"
    ]
    behind = round_of(status("n1", applied=9_000), status("n2", "leader"), status("n3"))
    assert lines(caught_up(behind, 9_876)) == [
        "FAIL node n1 applied 9,000 of the leader's commit 9,876"
    ]


def test_answers_without_the_fields_the_checks_read_count_as_silent() -> None:
    state = StatusRound.of(
        MEMBERS, {"n1": status("n1", term="4"), "n2": status("n2", "leader"), "n3": {"id": "n3"}}
    )
    assert list(state.answers) == ["n2"] and state.missing == ("n1", "n3")


@pytest.mark.parametrize(
    ("task", "election", "replication"),
    [
        ("Prepare the leader election", True, False),
        ("re-election after a failover", True, False),
        ("REELECT a leader", True, False),
        ("transfer leadership to n3", True, False),
        ("check log replication", False, True),
        ("Replicate the new entries", False, True),
        ("append entries to followers", False, True),
        ("inspect the logs", False, True),
        ("selection of agents; a catalog", False, False),  # words, not substrings
        ("", False, False),
    ],
)
def test_which_checks_a_task_calls_for(task: str, election: bool, replication: bool) -> None:
    assert mentions_election(task) is election
    assert mentions_replication(task) is replication

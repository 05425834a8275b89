"""The cross-node comparison of raft_manager/verify: ranges, first divergences, digests, reports."""

from __future__ import annotations

from typing import Any

import pytest

from raft_manager.core import EntryType
from raft_manager.verify import Report
from raft_manager.verify.checks import Verdict
from raft_manager.verify.compare import (
    LogHead,
    Record,
    common_range,
    digest_groups,
    first_divergence,
    records,
)
from raft_manager.verify.consistency import LogComparison, StateComparison

NORMAL = int(EntryType.NORMAL)


def head(node: str, snapshot: int = 0, commit: int = 100, snapshot_term: int = 0) -> LogHead:
    return LogHead(node, snapshot + 1, snapshot, snapshot_term, commit, commit, commit + 2, 3)


def page(low: int, high: int, *, term: int = 2, crc: int = 7, **changed: Any) -> list[list[int]]:
    """Entries low..high of term `term` with checksum `crc`; `changed={"i57": (t, type, crc)}`."""
    entries = []
    for index in range(low, high + 1):
        t, kind, c = changed.get(f"i{index}", (term, NORMAL, crc + index))
        entries.append([index, t, kind, c])
    return entries


def test_identical_logs_do_not_diverge() -> None:
    views = {node: records(head(node), page(1, 100), 1, 100) for node in ("n1", "n2", "n3")}
    assert first_divergence(views, 1, 100) is None


def test_the_first_differing_checksum_is_named_with_who_holds_what() -> None:
    views = {
        "n1": records(head("n1"), page(1, 100), 1, 100),
        "n2": records(head("n2"), page(1, 100), 1, 100),
        "n3": records(head("n3"), page(1, 100, i57=(2, NORMAL, 999), i80=(2, NORMAL, 1)), 1, 100),
    }
    divergence = first_divergence(views, 1, 100)
    assert divergence is not None and divergence.index == 57
    (majority, majority_nodes), (odd, odd_nodes) = divergence.holders
    assert majority_nodes == ("n1", "n2") and majority == Record(2, NORMAL, 7 + 57)
    assert odd_nodes == ("n3",) and odd.crc == 999
    text = divergence.describe()
    assert (
        text.startswith("entry 57 differs:")
        and "n1, n2 hold term 2" in text
        and "n3 holds term 2 NORMAL crc32c 000003e7" in text
    )
    assert divergence.as_dict()["holders"][1] == {
        "nodes": ["n3"],
        "term": 2,
        "type": "NORMAL",
        "crc32c": 999,
    }


def test_a_different_term_or_type_is_a_divergence_too() -> None:
    base = records(head("n1"), page(1, 10), 1, 10)
    other_term = records(head("n2"), page(1, 10, i4=(3, NORMAL, 7 + 4)), 1, 10)
    other_type = records(head("n2"), page(1, 10, i6=(2, int(EntryType.NOOP), 7 + 6)), 1, 10)
    assert first_divergence({"n1": base, "n2": other_term}, 1, 10).index == 4  # type: ignore[union-attr]
    assert first_divergence({"n1": base, "n2": other_type}, 1, 10).index == 6  # type: ignore[union-attr]


def test_the_common_range_starts_at_the_newest_snapshot_and_ends_at_the_lowest_commit() -> None:
    heads = [head("n1", snapshot=100, commit=300), head("n2", commit=250), head("n3", 50, 280)]
    assert common_range(heads) == (100, 250)
    assert common_range([head("n1"), head("n2", commit=40)]) == (1, 40)
    low, high = common_range([head("n1", snapshot=100, commit=300), head("n2", commit=40)])
    assert low > high  # n2 committed less than n1 still holds: nothing in common
    with pytest.raises(ValueError):
        common_range([])


def test_a_snapshot_point_is_compared_by_term_with_the_entries_of_other_nodes() -> None:
    compacted = head("n1", snapshot=100, commit=200, snapshot_term=2)
    same = records(compacted, page(101, 200), 100, 200)
    assert same[100] == Record(2)
    full = records(head("n2", commit=200), page(100, 200), 100, 200)
    assert first_divergence({"n1": same, "n2": full}, 100, 200) is None
    wrong_term = records(head("n3", commit=200), page(100, 200, i100=(1, NORMAL, 5)), 100, 200)
    divergence = first_divergence({"n1": same, "n3": wrong_term}, 100, 200)
    assert divergence is not None and divergence.index == 100
    assert "a snapshot at term 2" in divergence.describe()


def test_nodes_that_hold_nothing_at_an_index_are_left_out_there() -> None:
    # n1 compacted through 100 and sends nothing below; n2 and n3 agree on 1..100.
    views = {
        "n1": records(
            head("n1", snapshot=100, commit=200, snapshot_term=2), page(101, 150), 1, 150
        ),
        "n2": records(head("n2", commit=200), page(1, 150), 1, 150),
        "n3": records(head("n3", commit=200), page(1, 150, i30=(2, NORMAL, 0)), 1, 150),
    }
    divergence = first_divergence(views, 1, 150)
    assert divergence is not None and divergence.index == 30
    assert {nodes for _, nodes in divergence.holders} == {("n2",), ("n3",)}


@pytest.mark.parametrize(
    "entries",
    [
        "not a list",
        [[1, 2, 0]],  # three fields
        [[1, 2, 0, True]],  # a bool is not a checksum
        [[1, 2, 0, 5], [3, 2, 0, 5]],  # not consecutive
        [[0, 2, 0, 5]],  # below the window
        [[11, 2, 0, 5]],  # above the window
        [[5, 2, 0, 5]],  # at or below the snapshot point (5)
    ],
)
def test_a_malformed_page_is_refused(entries: Any) -> None:
    with pytest.raises(ValueError):
        records(head("n1", snapshot=5, commit=20), entries, 1, 10)


@pytest.mark.parametrize(
    ("snapshot", "entries"),
    [
        (0, []),  # an empty page from a node that holds 1..20
        (0, [[k, 2, 0, 5] for k in range(1, 6)]),  # the page stops short
        (0, [[k, 2, 0, 5] for k in range(3, 11)]),  # it starts late
        (5, [[k, 2, 0, 5] for k in range(7, 11)]),  # a gap after the snapshot point
    ],
)
def test_a_page_that_leaves_out_entries_the_node_holds_is_refused(
    snapshot: int, entries: list[list[int]]
) -> None:
    """Left out, they would be compared on no node, and the node still named as agreeing."""
    with pytest.raises(ValueError, match="leaves out entry"):
        records(head("n1", snapshot=snapshot, commit=20), entries, 1, 10)


def test_entries_past_the_commit_index_are_refused() -> None:
    with pytest.raises(ValueError):
        records(head("n1", commit=8), [[9, 2, 0, 5]], 1, 10)


GOOD_HEAD = {
    "id": "n1",
    "first_index": 11,
    "snapshot_index": 10,
    "snapshot_term": 2,
    "commit_index": 40,
    "applied_index": 39,
    "last_index": 41,
    "term": 3,
}


def test_a_log_head_is_validated() -> None:
    assert LogHead.parse(GOOD_HEAD).as_dict() == GOOD_HEAD
    for bad in (
        {**GOOD_HEAD, "id": 1},
        {**GOOD_HEAD, "commit_index": "40"},
        {**GOOD_HEAD, "term": -1},
        {**GOOD_HEAD, "first_index": 12},
        {**GOOD_HEAD, "applied_index": 41},
        {**GOOD_HEAD, "last_index": 39},
        [GOOD_HEAD],
    ):
        with pytest.raises(ValueError):
            LogHead.parse(bad)


def test_digests_group_by_value_largest_group_first() -> None:
    assert digest_groups({"n2": "a", "n1": "a", "n3": "a"}) == [("a", ["n1", "n2", "n3"])]
    assert digest_groups({"n1": "b", "n2": "a", "n3": "a"}) == [("a", ["n2", "n3"]), ("b", ["n1"])]


def _report(**changes: Any) -> Report:
    heads = {node: head(node) for node in ("n1", "n2", "n3")}
    log = LogComparison(1, 100, 100, ["n1", "n2", "n3"])
    state = StateComparison(105, {"n1": "d" * 64, "n2": "d" * 64, "n3": "d" * 64})
    return Report(**{"heads": heads, "unreachable": {}, "log": log, "state": state, **changes})


def test_a_consistent_report_exits_0_with_a_line_per_check() -> None:
    report = _report()
    assert report.exit_code == 0
    assert [check.line() for check in report.checks()] == [
        "ok   log: entries 1..100 agree on n1, n2, n3",
        "ok   state: digests agree at checkpoint 105 on n1, n2, n3 (dddddddddddd)",
    ]
    document = report.as_dict()
    assert document["consistent"] is True and document["log"]["from"] == 1
    assert document["state"]["compared"] is True and document["state"]["divergence"] is None


def test_a_divergent_log_or_state_exits_1_naming_the_index_and_nodes() -> None:
    views = {
        "n1": records(head("n1"), page(1, 100), 1, 100),
        "n2": records(head("n2"), page(1, 100, i42=(2, NORMAL, 0)), 1, 100),
    }
    divergence = first_divergence(views, 1, 100)
    report = _report(log=LogComparison(1, 100, 42, ["n1", "n2"], divergence))
    assert report.exit_code == 1
    assert report.checks()[0].line().startswith("FAIL log: entry 42 differs: n1 holds")
    state = StateComparison(105, {"n1": "a" * 64, "n2": "a" * 64, "n3": "b" * 64})
    report = _report(state=state)
    assert report.exit_code == 1
    failed = [c.text for c in report.checks() if c.verdict is Verdict.FAIL]
    assert failed == [
        "state: digests differ at checkpoint 105: n1, n2 aaaaaaaaaaaa; n3 bbbbbbbbbbbb"
    ]
    assert report.as_dict()["state"]["divergence"][1] == {"digest": "b" * 64, "nodes": ["n3"]}


def test_unreachable_nodes_and_an_uncommitted_checkpoint_are_skipped_not_failed() -> None:
    state = StateComparison(None, note="no checkpoint could be committed (timeout)")
    report = _report(unreachable={"n3": "did not answer"}, state=state)
    assert report.exit_code == 0
    lines = [check.line() for check in report.checks()]
    assert "skip n3 unreachable, not checked: did not answer" in lines
    assert "skip state: not compared: no checkpoint could be committed (timeout)" in lines
    assert report.as_dict()["state"]["compared"] is False


def test_no_node_answering_exits_2() -> None:
    report = Report({}, {"n1": "refused", "n2": "refused"})
    assert report.exit_code == 2
    document = report.as_dict()
    assert document["consistent"] is None and document["log"] is None
    assert [node["reachable"] for node in document["nodes"]] == [False, False]

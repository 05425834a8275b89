"""Unit tests for RaftLog: term lookup, the election restriction, follower appends, commit rules,
byte-bounded slices, term searches (also after compaction), restore and compaction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft_manager.core import (
    ConfState,
    Entry,
    EntryType,
    InvalidMessage,
    RaftError,
    Snapshot,
    SnapshotMeta,
)
from raft_manager.core.log import RaftLog
from raft_manager.core.types import ENTRY_OVERHEAD_BYTES


def ents(*terms: int, start: int = 1, data: bytes = b"") -> list[Entry]:
    """Entries with consecutive indexes from `start` and the given terms."""
    return [Entry(start + k, term, EntryType.NORMAL, data) for k, term in enumerate(terms)]


def make_log(*terms: int, offset: int = 0, offset_term: int = 0, commit: int = 0) -> RaftLog:
    return RaftLog(offset, offset_term, ents(*terms, start=offset + 1), commit)


def frozen(log: RaftLog) -> tuple[object, ...]:
    return (
        list(log.entries),
        log.offset,
        log.offset_term,
        log.committed,
        log.stable,
        log.applied,
        log.pending_snapshot,
    )


# -- construction and term lookup -----------------------------------------------------------------


def test_constructor_rejects_entries_that_do_not_start_after_the_offset() -> None:
    with pytest.raises(ValueError):
        RaftLog(3, 1, ents(1, start=5), 0)


def test_constructor_clamps_commit_to_the_log_and_marks_everything_stable() -> None:
    log = make_log(1, 1, 2, commit=10)
    assert log.committed == 3
    assert log.stable == 3
    assert log.applied == 0
    assert not log.has_unstable()
    compacted = make_log(2, 2, offset=5, offset_term=2, commit=1)
    assert compacted.committed == 5  # never below the snapshot
    assert compacted.applied == 5


def test_term_lookup_without_offset() -> None:
    log = make_log(1, 1, 2)
    assert log.term(0) == 0
    assert [log.term(i) for i in (1, 2, 3)] == [1, 1, 2]
    assert log.term(4) is None
    assert log.term(-1) is None
    assert log.last_index == 3
    assert log.last_term == 2


def test_term_lookup_with_offset_and_compacted_range() -> None:
    log = make_log(3, 4, offset=5, offset_term=3)
    assert log.term(5) == 3  # the snapshot's own index still has a known term
    assert log.term(6) == 3
    assert log.term(7) == 4
    for compacted in (0, 1, 4):
        assert log.term(compacted) is None
    assert log.term(8) is None
    assert log.last_index == 7
    assert log.last_term == 4


def test_empty_log_after_snapshot_reports_the_snapshot_as_last() -> None:
    log = make_log(offset=9, offset_term=4)
    assert log.last_index == 9
    assert log.last_term == 4
    assert log.match_term(9, 4)
    assert not log.match_term(9, 3)


# -- election restriction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_index", "last_term", "expected"),
    [
        (3, 2, True),  # identical
        (4, 2, True),  # same term, longer
        (2, 2, False),  # same term, shorter
        (1, 3, True),  # higher term wins even when shorter
        (10, 1, False),  # lower term loses even when longer
        (0, 0, False),
    ],
)
def test_is_up_to_date(last_index: int, last_term: int, expected: bool) -> None:
    log = make_log(1, 1, 2)
    assert log.is_up_to_date(last_index, last_term) is expected


def test_is_up_to_date_uses_the_snapshot_term_of_an_empty_log() -> None:
    log = make_log(offset=5, offset_term=3)
    assert log.is_up_to_date(5, 3)
    assert not log.is_up_to_date(4, 3)
    assert not log.is_up_to_date(100, 2)


# -- find_conflict / maybe_append ------------------------------------------------------------------


def test_find_conflict() -> None:
    log = make_log(1, 1, 2, 2)
    assert log.find_conflict([]) == 0
    assert log.find_conflict(ents(1, 1, 2, 2)) == 0  # all match
    assert log.find_conflict(ents(1, 2, start=2)) == 0  # a matching middle run
    assert log.find_conflict(ents(2, 2, 3, start=3)) == 5  # first new entry
    assert log.find_conflict(ents(1, 3, start=2)) == 3  # first mismatching term
    assert log.find_conflict(ents(3, start=1)) == 1


def test_maybe_append_refuses_when_prev_does_not_match() -> None:
    log = make_log(1, 1, 2)
    before = frozen(log)
    assert log.maybe_append(3, 1, 3, ents(2, start=4)) is None  # wrong prev term
    assert log.maybe_append(5, 2, 3, ents(2, start=6)) is None  # prev beyond the log
    assert frozen(log) == before


def test_maybe_append_without_conflict_keeps_a_longer_log() -> None:
    log = make_log(1, 1, 2, 2)
    # A delayed append carrying a prefix of what we hold must not truncate the rest.
    assert log.maybe_append(1, 1, 0, ents(1, 2, start=2)) == 3
    assert [e.term for e in log.entries] == [1, 1, 2, 2]
    assert log.stable == 4
    assert log.committed == 0


def test_maybe_append_appends_new_entries_and_commits_up_to_the_last_new() -> None:
    log = make_log(1, 1)
    assert log.maybe_append(2, 1, 10, ents(2, 2, start=3)) == 4
    assert [e.term for e in log.entries] == [1, 1, 2, 2]
    # The leader's commit is capped at what this message proved to match.
    assert log.committed == 4
    assert log.unstable_entries() == ents(2, 2, start=3)
    assert log.has_unstable()


def test_maybe_append_commit_is_capped_at_the_last_new_entry_not_the_log_end() -> None:
    log = make_log(1, 1, 1, 1)
    assert log.maybe_append(1, 1, 4, []) == 1
    assert log.committed == 1  # entries 2..4 were not vouched for by this message


def test_maybe_append_truncates_a_conflicting_suffix_and_moves_stable_back() -> None:
    log = make_log(1, 1, 2, 2, 2, commit=2)
    assert log.stable == 5
    assert log.maybe_append(2, 1, 2, ents(3, 3, start=3)) == 4
    assert [e.term for e in log.entries] == [1, 1, 3, 3]
    assert log.stable == 2  # entries 3.. were replaced: not durable any more
    assert log.unstable_entries() == ents(3, 3, start=3)
    assert log.committed == 2


def test_maybe_append_conflict_in_the_middle_of_the_message() -> None:
    log = make_log(1, 1, 2)
    assert log.maybe_append(1, 1, 0, ents(1, 3, start=2)) == 3
    assert [e.term for e in log.entries] == [1, 1, 3]
    assert log.stable == 2


def test_maybe_append_refuses_to_rewrite_the_committed_prefix() -> None:
    log = make_log(1, 1, 2, 2, commit=3)
    before = frozen(log)
    with pytest.raises(InvalidMessage) as info:
        log.maybe_append(1, 1, 4, ents(3, 3, start=2))
    assert isinstance(info.value, RaftError)
    assert frozen(log) == before


def test_maybe_append_may_replace_the_first_uncommitted_entry() -> None:
    log = make_log(1, 1, 2, 2, commit=3)
    assert log.maybe_append(3, 2, 3, ents(3, start=4)) == 4
    assert [e.term for e in log.entries] == [1, 1, 2, 3]
    assert log.committed == 3


def test_maybe_append_after_compaction() -> None:
    log = make_log(2, 2, offset=5, offset_term=2, commit=6)
    assert log.maybe_append(5, 2, 8, ents(2, 3, start=6)) == 7
    assert [e.term for e in log.entries] == [2, 3]
    assert log.committed == 7
    assert log.maybe_append(4, 2, 8, ents(2, start=5)) is None  # prev compacted away


# -- commit ----------------------------------------------------------------------------------------


def test_commit_to_never_goes_beyond_the_last_index_nor_backwards() -> None:
    log = make_log(1, 1, 2)
    log.commit_to(2)
    assert log.committed == 2
    log.commit_to(99)
    assert log.committed == 3
    log.commit_to(1)
    assert log.committed == 3


def test_maybe_commit_only_for_an_entry_of_the_given_term() -> None:
    log = make_log(1, 1, 2, 2)
    assert not log.maybe_commit(2, 2)  # entry 2 is from term 1: Figure 8
    assert log.committed == 0
    assert not log.maybe_commit(5, 2)  # beyond the log
    assert log.maybe_commit(3, 2)
    assert log.committed == 3
    assert not log.maybe_commit(3, 2)  # no progress
    assert not log.maybe_commit(2, 1)  # never backwards
    assert log.committed == 3
    assert log.maybe_commit(4, 2)
    assert log.committed == 4


def test_entries_to_apply_follow_applied_and_committed() -> None:
    log = make_log(1, 1, 2, commit=2)
    assert log.has_entries_to_apply()
    assert log.entries_to_apply() == ents(1, 1)
    log.applied = 2
    assert not log.has_entries_to_apply()
    assert log.entries_to_apply() == []


def test_stable_to_ignores_replaced_entries() -> None:
    log = make_log(1)
    log.append(ents(1, 1, start=2))
    assert log.stable == 1
    log.stable_to(3, 2)  # wrong term: those entries were replaced meanwhile
    assert log.stable == 1
    log.stable_to(3, 1)
    assert log.stable == 3
    log.stable_to(2, 1)  # never backwards
    assert log.stable == 3


# -- slice ---------------------------------------------------------------------------------------


def test_slice_returns_entries_and_their_size() -> None:
    log = RaftLog(0, 0, ents(1, 1, 1, 1, data=b"x" * 10), 0)
    one = 10 + ENTRY_OVERHEAD_BYTES
    assert log.slice(1, 5, 1 << 20) == (log.entries, 4 * one)
    assert log.slice(2, 4, 1 << 20) == (log.entries[1:3], 2 * one)
    assert log.slice(1, 5, 2 * one) == (log.entries[:2], 2 * one)  # exactly fits
    assert log.slice(1, 5, 2 * one + 1) == (log.entries[:2], 2 * one)
    assert log.slice(1, 5, 2 * one - 1) == (log.entries[:1], one)


def test_slice_always_returns_at_least_one_entry() -> None:
    log = RaftLog(0, 0, ents(1, 1, data=b"y" * 1000), 0)
    entries, size = log.slice(1, 3, 1)
    assert entries == log.entries[:1]
    assert size == 1000 + ENTRY_OVERHEAD_BYTES


def test_slice_after_compaction_and_of_a_compacted_range() -> None:
    log = RaftLog(4, 2, ents(2, 3, start=5), 0)
    assert log.slice(5, 7, 1 << 20)[0] == log.entries
    assert log.slice(6, 7, 1 << 20)[0] == log.entries[1:]
    with pytest.raises(IndexError):
        log.slice(4, 7, 1 << 20)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 200), min_size=1, max_size=12),
    max_bytes=st.integers(1, 2000),
    low_pick=st.integers(0, 11),
)
def test_slice_size_bound_property(sizes: list[int], max_bytes: int, low_pick: int) -> None:
    entries = [Entry(k + 1, 1, EntryType.NORMAL, b"z" * n) for k, n in enumerate(sizes)]
    log = RaftLog(0, 0, entries, 0)
    low = 1 + low_pick % len(sizes)
    chunk, size = log.slice(low, log.last_index + 1, max_bytes)
    assert chunk, "at least one entry"
    assert chunk == entries[low - 1 : low - 1 + len(chunk)]
    assert size == sum(len(e.data) + ENTRY_OVERHEAD_BYTES for e in chunk)
    assert size <= max_bytes or len(chunk) == 1
    if low - 1 + len(chunk) < len(entries):  # cut short: the next entry would not fit
        following = entries[low - 1 + len(chunk)]
        assert size + len(following.data) + ENTRY_OVERHEAD_BYTES > max_bytes


# -- term searches ---------------------------------------------------------------------------------


def test_first_index_of_term() -> None:
    log = make_log(1, 1, 2, 2, 2, 4)
    assert log.first_index_of_term(1) == 1
    assert log.first_index_of_term(2) == 1
    assert log.first_index_of_term(3) == 3
    assert log.first_index_of_term(5) == 3
    assert log.first_index_of_term(6) == 6


def test_first_index_of_term_stops_above_the_offset() -> None:
    log = make_log(2, 2, 3, offset=4, offset_term=2)
    assert log.first_index_of_term(6) == 5  # entry 4 (the offset) had term 2 too, but is gone
    assert log.first_index_of_term(7) == 7


def test_last_index_of_term() -> None:
    log = make_log(1, 1, 2, 2, 4)
    assert log.last_index_of_term(1) == 2
    assert log.last_index_of_term(2) == 4
    assert log.last_index_of_term(3) is None
    assert log.last_index_of_term(4) == 5
    assert log.last_index_of_term(5) is None


def test_last_index_of_term_after_compaction() -> None:
    log = make_log(3, 3, 5, offset=6, offset_term=2)
    assert log.last_index_of_term(3) == 8
    assert log.last_index_of_term(5) == 9
    assert log.last_index_of_term(2) == 6  # only the snapshot index holds it
    assert log.last_index_of_term(1) is None  # compacted away: unknown
    assert log.last_index_of_term(4) is None
    empty = make_log(offset=6, offset_term=2)
    assert empty.last_index_of_term(2) == 6
    assert empty.last_index_of_term(3) is None


# -- restore and compact ---------------------------------------------------------------------------


def test_restore_replaces_the_log_by_the_snapshot() -> None:
    log = make_log(1, 1, 2, commit=2)
    log.applied = 1
    snapshot = Snapshot(SnapshotMeta(10, 3, ConfState(("a", "b", "c"))), b"image")
    log.restore(snapshot)
    assert (log.offset, log.offset_term, log.entries) == (10, 3, [])
    assert (log.committed, log.applied, log.stable) == (10, 10, 10)
    assert log.last_index == 10
    assert log.last_term == 3
    assert log.pending_snapshot is snapshot
    assert log.term(3) is None
    assert log.entries_to_apply() == []
    assert not log.has_unstable()
    assert log.maybe_append(10, 3, 11, ents(3, start=11)) == 11
    assert log.committed == 11


def test_compact_drops_the_prefix_and_keeps_the_term_of_the_new_offset() -> None:
    log = make_log(1, 1, 2, 2, 3, commit=4)
    log.applied = 4
    log.compact(3)
    assert (log.offset, log.offset_term) == (3, 2)
    assert [e.index for e in log.entries] == [4, 5]
    assert log.last_index == 5
    assert log.term(3) == 2
    assert log.term(2) is None
    assert log.first_index_of_term(4) == 4
    log.compact(4)
    assert (log.offset, log.offset_term) == (4, 2)
    assert log.entries_to_apply() == []


def test_compact_refuses_unapplied_or_compacted_indexes() -> None:
    log = make_log(1, 1, 2, commit=3)
    log.applied = 2
    before = frozen(log)
    with pytest.raises(ValueError):
        log.compact(3)  # not applied yet
    with pytest.raises(ValueError):
        log.compact(7)  # does not exist
    assert frozen(log) == before
    log.compact(2)
    with pytest.raises(ValueError):
        log.compact(1)  # already compacted
    assert log.offset == 2


@settings(max_examples=80, deadline=None)
@given(
    existing=st.lists(st.integers(1, 3), max_size=8).map(sorted),
    commit=st.integers(0, 8),
    prev_index=st.integers(0, 9),
    new_terms=st.lists(st.integers(1, 4), max_size=5).map(sorted),
)
def test_maybe_append_property(
    existing: list[int], commit: int, prev_index: int, new_terms: list[int]
) -> None:
    """Whatever a (well-chained) append carries, the committed prefix never changes and the
    cursors keep their order; a refusal changes nothing."""
    log = make_log(*existing, commit=commit)
    committed_prefix = log.entries[: log.committed]
    old_commit = log.committed
    before = frozen(log)
    prev_term = log.term(prev_index) or 0
    entries = [Entry(prev_index + 1 + k, max(t, prev_term)) for k, t in enumerate(new_terms)]
    try:
        result = log.maybe_append(prev_index, prev_term, 8, entries)
    except InvalidMessage:
        assert frozen(log) == before
        return
    if result is None:
        assert frozen(log) == before
        return
    assert result == prev_index + len(entries)
    assert log.entries[: len(committed_prefix)] == committed_prefix
    assert old_commit <= log.committed <= log.last_index
    assert log.stable <= log.last_index
    for entry in entries:
        assert log.term(entry.index) == entry.term
    assert [e.index for e in log.entries] == list(range(1, log.last_index + 1))

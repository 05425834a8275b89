"""Unit tests for Progress and Inflights: probe / replicate / snapshot flow control."""

from __future__ import annotations

from raft_manager.core.progress import Inflights, Progress, ProgressState


def progress(next_index: int = 1, *, max_count: int = 3, max_bytes: int = 1000) -> Progress:
    return Progress(next_index, Inflights(max_count, max_bytes))


def replicating(match: int, *, max_count: int = 3, max_bytes: int = 1000) -> Progress:
    pr = progress(match + 1, max_count=max_count, max_bytes=max_bytes)
    assert pr.maybe_update(match) or match == 0
    pr.become_replicate()
    return pr


# -- Inflights -----------------------------------------------------------------------------------


def test_inflights_full_by_count() -> None:
    inflights = Inflights(2, 1000)
    assert not inflights.full()
    inflights.add(3, 10)
    assert not inflights.full()
    inflights.add(5, 10)
    assert inflights.full()
    assert len(inflights) == 2
    assert inflights.bytes == 20


def test_inflights_full_by_bytes() -> None:
    inflights = Inflights(100, 50)
    inflights.add(1, 49)
    assert not inflights.full()
    inflights.add(2, 1)
    assert inflights.full()  # reaching the byte budget exactly fills the window
    big = Inflights(100, 50)
    big.add(1, 500)  # one oversized message fills it on its own
    assert big.full()


def test_inflights_free_to_forgets_acknowledged_messages_in_order() -> None:
    inflights = Inflights(10, 1000)
    for last, size in ((2, 10), (4, 20), (7, 30)):
        inflights.add(last, size)
    inflights.free_to(1)  # acknowledges no message entirely
    assert (len(inflights), inflights.bytes) == (3, 60)
    inflights.free_to(4)
    assert (len(inflights), inflights.bytes) == (1, 30)
    inflights.free_to(3)  # stale acknowledgement: no effect
    assert (len(inflights), inflights.bytes) == (1, 30)
    inflights.free_to(100)
    assert (len(inflights), inflights.bytes) == (0, 0)


def test_inflights_free_to_reopens_a_full_window() -> None:
    inflights = Inflights(2, 1000)
    inflights.add(1, 1)
    inflights.add(2, 1)
    assert inflights.full()
    inflights.free_to(1)
    assert not inflights.full()
    inflights.reset()
    assert (len(inflights), inflights.bytes) == (0, 0)


# -- probe ---------------------------------------------------------------------------------------


def test_probe_pauses_after_one_send_until_an_answer() -> None:
    pr = progress(5)
    assert pr.state is ProgressState.PROBE
    assert not pr.is_paused()
    pr.sent_entries(7, 100)
    assert pr.is_paused()
    assert pr.next == 5  # a probe does not move next optimistically
    assert len(pr.inflights) == 0
    assert pr.maybe_update(7)
    assert not pr.is_paused()
    assert (pr.match, pr.next) == (7, 8)


def test_maybe_update_ignores_old_acknowledgements_but_never_moves_next_back() -> None:
    pr = progress(1)
    assert pr.maybe_update(4)
    assert (pr.match, pr.next) == (4, 5)
    pr.sent_entries(6, 10)
    assert not pr.maybe_update(3)
    assert (pr.match, pr.next) == (4, 5)
    assert pr.is_paused()  # a stale answer does not unpause a probe


def test_probe_stale_rejection_is_ignored() -> None:
    pr = progress(6)
    pr.sent_entries(8, 10)
    assert not pr.maybe_decrease_to(3, 1)  # answers an older probe (sent after 3, not after 5)
    assert (pr.next, pr.probe_sent) == (6, True)


def test_probe_rejection_moves_next_back_to_the_hint_and_unpauses() -> None:
    pr = progress(10)
    pr.match = 2
    pr.sent_entries(12, 10)
    assert pr.maybe_decrease_to(9, 5)
    assert pr.next == 5
    assert not pr.is_paused()
    assert pr.state is ProgressState.PROBE
    assert pr.maybe_decrease_to(4, 100)  # a hint beyond the rejected index is capped by it
    assert pr.next == 4
    assert pr.maybe_decrease_to(3, 1)  # never below match + 1
    assert pr.next == 3


# -- replicate -----------------------------------------------------------------------------------


def test_become_replicate_starts_after_match() -> None:
    pr = progress(9)
    pr.maybe_update(4)
    pr.sent_entries(5, 1)
    pr.become_replicate()
    assert pr.state is ProgressState.REPLICATE
    assert (pr.match, pr.next) == (4, 5)
    assert not pr.probe_sent
    assert len(pr.inflights) == 0


def test_replicate_streams_until_the_window_is_full_by_count() -> None:
    pr = replicating(4, max_count=3)
    for last in (6, 8, 9):
        assert not pr.is_paused()
        pr.sent_entries(last, 10)
        assert pr.next == last + 1
    assert pr.is_paused()
    assert len(pr.inflights) == 3
    assert pr.maybe_update(6)
    pr.inflights.free_to(6)
    assert not pr.is_paused()
    assert pr.next == 10  # acknowledgements never pull next back


def test_replicate_window_full_by_bytes() -> None:
    pr = replicating(0, max_count=100, max_bytes=100)
    pr.sent_entries(1, 60)
    assert not pr.is_paused()
    pr.sent_entries(2, 40)
    assert pr.is_paused()
    pr.inflights.free_to(1)
    assert not pr.is_paused()


def test_replicate_stale_rejection_is_ignored() -> None:
    pr = replicating(5)
    pr.sent_entries(8, 10)
    assert not pr.maybe_decrease_to(5, 1)
    assert not pr.maybe_decrease_to(2, 1)
    assert pr.state is ProgressState.REPLICATE
    assert (pr.match, pr.next, len(pr.inflights)) == (5, 9, 1)


def test_replicate_rejection_falls_back_to_probe() -> None:
    pr = replicating(5)
    pr.sent_entries(8, 10)
    pr.sent_entries(10, 10)
    assert pr.maybe_decrease_to(8, 7)
    assert pr.state is ProgressState.PROBE
    assert pr.next == 7
    assert len(pr.inflights) == 0 and pr.inflights.bytes == 0
    assert not pr.is_paused()
    assert pr.match == 5


def test_replicate_rejection_never_moves_next_to_or_below_match() -> None:
    pr = replicating(5)
    pr.sent_entries(8, 10)
    assert pr.maybe_decrease_to(8, 1)
    assert pr.next == 6


def test_become_probe_from_replicate_restarts_after_match() -> None:
    pr = replicating(5)
    pr.sent_entries(9, 10)
    pr.become_probe()
    assert pr.state is ProgressState.PROBE
    assert pr.next == 6
    assert len(pr.inflights) == 0
    assert not pr.is_paused()


# -- snapshot ------------------------------------------------------------------------------------


def test_snapshot_state_is_paused() -> None:
    pr = replicating(3)
    pr.sent_entries(5, 10)
    pr.become_snapshot(20)
    assert pr.state is ProgressState.SNAPSHOT
    assert pr.snapshot_index == 20
    assert pr.snapshot_offset == 0
    assert len(pr.inflights) == 0
    assert pr.is_paused()
    pr.maybe_update(4)
    assert pr.is_paused()  # still waiting for the snapshot


def test_become_probe_after_snapshot_continues_from_the_snapshot_index() -> None:
    pr = progress(4)
    pr.maybe_update(3)
    pr.become_snapshot(20)
    pr.snapshot_offset = 1000
    pr.become_probe()
    assert pr.state is ProgressState.PROBE
    assert pr.next == 21
    assert pr.match == 3
    assert (pr.snapshot_index, pr.snapshot_offset) == (0, 0)
    assert not pr.is_paused()


def test_become_probe_after_snapshot_uses_match_when_it_is_further() -> None:
    pr = progress(4)
    pr.become_snapshot(20)
    pr.maybe_update(25)
    pr.become_probe()
    assert pr.next == 26


def test_snapshot_then_replicate_once_the_snapshot_is_acknowledged() -> None:
    pr = progress(4)
    pr.become_snapshot(20)
    assert pr.maybe_update(20)
    pr.become_probe()
    pr.become_replicate()
    assert pr.state is ProgressState.REPLICATE
    assert (pr.match, pr.next) == (20, 21)

"""The ledger's deadline heap: moved and cancelled deadlines do not pile up (the heap is rebuilt
from the live deadlines once stale entries outnumber them), and rebuilding it never changes
which deadlines fire or in what order, even when it happens while they are firing."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from raft_manager.ledger.timers import Timers


def test_a_deadline_moved_again_and_again_keeps_the_heap_small() -> None:
    timers = Timers(compact_floor=16)
    for now in range(100_000):
        timers.schedule(now + 30_000, "session", "s")
        timers.schedule(now + 1_000, "lease", f"t{now}")
        timers.cancel("lease", f"t{now}")
    assert len(timers) <= 16 + 2
    assert list(timers.due(10**9)) == [("session", "s")]


def test_scheduling_the_same_deadline_again_adds_nothing() -> None:
    timers = Timers()
    for _ in range(10):
        timers.schedule(5, "ttl", "k")
    assert len(timers) == 1


def test_a_cancelled_deadline_never_fires_and_one_scheduled_after_does() -> None:
    timers = Timers()
    timers.schedule(5, "lease", "a")
    timers.schedule(6, "lease", "b")
    timers.cancel("lease", "a")
    timers.cancel("lease", "nothing")
    assert list(timers.due(10)) == [("lease", "b")]
    timers.schedule(20, "lease", "a")
    assert list(timers.due(20)) == [("lease", "a")]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["schedule", "schedule", "cancel", "due"]),
        st.integers(0, 60),
        st.sampled_from(["lease", "ttl"]),
        st.sampled_from(["a", "b", "c", "d", "e"]),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, seed=st.integers(0, 1000))
def test_rebuilding_the_heap_changes_nothing_that_fires(
    ops: list[tuple[str, int, str, str]], seed: int
) -> None:
    """One heap rebuilt as often as it can be, one never: the same deadlines fire in the same
    order, also when firing one schedules others (as a lease ending can)."""
    eager, never = Timers(compact_floor=0), Timers(compact_floor=10**9)
    fired: list[list[tuple[str, str]]] = [[], []]
    for timers, log in ((eager, fired[0]), (never, fired[1])):
        rng = random.Random(seed)
        for op, at, kind, key in ops:
            if op == "schedule":
                timers.schedule(at, kind, key)
            elif op == "cancel":
                timers.cancel(kind, key)
            else:
                for due in timers.due(at):
                    log.append(due)
                    if rng.random() < 0.5:  # the owner schedules again while firing
                        timers.schedule(at + rng.randrange(0, 5), "ttl", due[1])
    assert fired[0] == fired[1]

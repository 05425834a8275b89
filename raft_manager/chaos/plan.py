"""The fault plan of a chaos run: which faults, when, for how long; decided by a seed alone.

Theory of operation: `plan_faults` lays faults out one after another over the run, from
WARMUP seconds in (the clients first work on a healthy cluster) to TAIL seconds before its end
(the last fault is undone and the cluster works healthy again before the clients stop). The
kinds take turns in a shuffled order, so every kind asked for is injected as soon as the run
is long enough for one of each. Each fault is held for a random time (long enough to force an
election when it strikes the leader), and a quiet gap follows it. Which node a fault strikes
cannot be known in advance (the leader moves), so a fault carries a `variant` (strike the
leader or any voter; isolate the leader or split the cluster at random; take a voter out and
back, or grow the cluster by a spare node and shrink it again) and a number `pick` in [0, 1)
that chooses among the candidates when it is injected. A fault that takes longer than planned
(a membership change waits for a learner to catch up) delays the next ones; the injector skips
those that would end after the tail begins. Nothing here touches a process or a socket.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("kill", "pause", "partition", "membership")
VARIANTS = {
    "kill": ("leader", "voter"),
    "pause": ("leader", "voter"),
    "partition": ("leader", "split"),
    "membership": ("rejoin", "grow"),
}
HOLD = {  # seconds a fault lasts (membership: between its two changes)
    "kill": (1.0, 2.5),
    "pause": (1.0, 2.5),
    "partition": (1.5, 3.0),
    "membership": (1.0, 2.0),
}
GAP = (0.5, 1.5)  # seconds of quiet after each fault
WARMUP = 1.0  # seconds before the first fault
TAIL = 1.5  # seconds between the end of the last fault and the end of the run


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # one of KINDS
    at: float  # seconds after the clients started: not before then
    hold: float  # seconds
    variant: str  # one of VARIANTS[kind]
    pick: float  # in [0, 1): chooses the target among the candidates when injected

    def choose(self, candidates: Sequence[str]) -> str:
        """The candidate `pick` points at (in sorted order, so a seed replays the same way)."""
        ordered = sorted(candidates)
        return ordered[int(self.pick * len(ordered))]


def parse_kinds(text: str) -> tuple[str, ...]:
    """`kill,pause` -> ("kill", "pause"); `none` or nothing -> (); ValueError naming an
    unknown kind."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise ValueError(
            f"unknown fault kind {unknown[0]!r}: use {', '.join(KINDS)} (comma-separated), or none"
        )
    return tuple(dict.fromkeys(names))


def plan_faults(kinds: Sequence[str], duration: float, seed: int) -> list[Fault]:
    """The faults of a run of `duration` seconds, in order."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    turn: list[str] = []
    at = WARMUP
    while kinds:
        if not turn:
            turn = list(kinds)
            rng.shuffle(turn)
        kind = turn.pop()
        hold = rng.uniform(*HOLD[kind])
        if at + hold > duration - TAIL:
            break
        faults.append(Fault(kind, at, hold, rng.choice(VARIANTS[kind]), rng.random()))
        at += hold + rng.uniform(*GAP)
    return faults

"""The Wing-Gong / Lowe linearizability search, over any deterministic model.

Theory of operation: a history is linearizable when its operations can be put in one order
that the model accepts step by step and that respects real time: an operation that completed
before another was invoked comes first. Each operation is an interval (call, return), its
return None when the outcome is unknown (an `info` operation: it may take effect at any moment
after its call, or never).

The search (Wing and Gong 1993, with Lowe's memoization, as porcupine and Knossos do it) keeps
the call and return events in one doubly linked list sorted by time, calls before returns at
equal times (operations that touch are concurrent). Walking the list from its head, every call
met before the first return is an operation that may go next: nothing that must precede it is
left. It tries them in order: if the model accepts one from the current state, and the
configuration it leads to (the operations placed so far, as bitsets; the new state) is new,
the operation is lifted out of the list (its call and its return), pushed on a stack, and the
walk starts again from the head. Meeting a return means the operation it ends could not be
placed before it: pop the last choice, put it back in the list and try the next candidate
after it. The history is linearizable once every definite operation is placed: an `info`
operation has no return event, so it never blocks the walk, and one never placed is one that
never took effect. It is not when the stack is empty at a return. The memo makes the search
visit each configuration once, and a configuration counts as met before when one with the
same definite operations placed and the same state was reached with a subset of its info
operations placed (whatever this one can still do, that one could too: leaving an info
operation out is allowed). The worst case is still exponential in the number of operations
that overlap, so the search counts its steps and gives up at `budget`.

One pruning beyond the classic search: an observation (a definite operation that leaves the
state as it is) that can be placed is placed at once and never undone to try another candidate
in its stead, and if placing it leads to a configuration already explored, the search backs
out of the current one. This is sound when the model keeps a promise: where an operation that
observes one state changes another (a read that reveals an unknown version), the state it
leads to accepts nothing that the state before would refuse, up to info operations that would
then change nothing. Any linearization can then place the observation first. It cuts the
steps several-fold where many clients overlap.

At the deepest point reached (the most operations placed) the search notes the order, the
state, the operation whose return it could not get past and the candidates it tried there:
for a violation, that is the witness.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

State = TypeVar("State", bound=Hashable)
Verdict = Literal["linearizable", "violation", "unknown"]


@dataclass(frozen=True, slots=True)
class Search(Generic[State]):
    """What the search found. `order` is a linearization (op indexes, in order) when the
    history is linearizable, else the longest linearizable prefix found, after which the model
    is in `state`, `blocked` is the operation that could not be placed before its return and
    `candidates` the operations that could have gone next there (`blocked` among them)."""

    verdict: Verdict
    steps: int
    order: tuple[int, ...]
    state: State
    blocked: int | None = None
    candidates: tuple[int, ...] = ()


class _Events:
    """The call and return events, in a doubly linked list that operations are lifted out of
    and put back into (in reverse order: dancing links)."""

    def __init__(self, intervals: Sequence[tuple[int, int | None]]) -> None:
        events: list[tuple[int, int, int]] = []
        for op, (call, ret) in enumerate(intervals):
            events.append((call, 0, op))
            if ret is not None:
                events.append((ret, 1, op))
        events.sort()
        size = len(events)
        self.head = size  # the sentinel
        self.op = [op for _, _, op in events]
        self.is_call = [kind == 0 for _, kind, _ in events]
        self.next: list[int] = [*range(1, size), -1, 0 if size else -1]
        self.prev: list[int] = [size, *range(size - 1), -1]
        self.return_of = [-1] * len(intervals)
        for position, (_, kind, op) in enumerate(events):
            if kind == 1:
                self.return_of[op] = position

    def first(self) -> int:
        return self.next[self.head]

    def _unlink(self, position: int) -> None:
        after, before = self.next[position], self.prev[position]
        self.next[before] = after
        if after != -1:
            self.prev[after] = before

    def _relink(self, position: int) -> None:
        after, before = self.next[position], self.prev[position]
        self.next[before] = position
        if after != -1:
            self.prev[after] = position

    def lift(self, call: int) -> None:
        self._unlink(call)
        ret = self.return_of[self.op[call]]
        if ret != -1:
            self._unlink(ret)

    def unlift(self, call: int) -> None:
        ret = self.return_of[self.op[call]]
        if ret != -1:
            self._relink(ret)
        self._relink(call)

    def calls_before(self, stop: int) -> tuple[int, ...]:
        """The operations whose calls lie between the head and `stop`."""
        found, position = [], self.first()
        while position not in (stop, -1):
            if self.is_call[position]:
                found.append(self.op[position])
            position = self.next[position]
        return tuple(found)


def search(
    intervals: Sequence[tuple[int, int | None]],
    initial: State,
    step: Callable[[State, int], State | None],
    budget: int,
) -> Search[State]:
    """Is there a linearization of the operations (`intervals[i]` is operation i's (call,
    return), return None for an unknown outcome) that `step` accepts from `initial`? `step`
    gives the state after operation i, or None if the model refuses it there. At most `budget`
    steps (then the verdict is "unknown")."""
    events = _Events(intervals)
    is_call, event_op, next_of = events.is_call, events.op, events.next
    lift, unlift, first = events.lift, events.unlift, events.first
    definite = [ret is not None for _, ret in intervals]
    remaining = sum(definite)
    state, steps = initial, 0
    placed, placed_info = 0, 0  # bitsets of the definite and the info operations placed
    # (definite operations placed, state) -> the info sets it was reached with, none a subset
    # of another
    seen: dict[tuple[int, State], list[int]] = {}
    path: list[tuple[int, State, bool]] = []  # the stack: (call event, state before, forced)
    best: Search[State] = Search("violation", 0, (), initial)  # the deepest point a return met
    position = first()
    while remaining:
        steps += 1
        if steps > budget:
            return _ended(best, "unknown", steps, events, path, state)
        if is_call[position]:
            op = event_op[position]
            after = step(state, op)
            if after is not None:
                # An observation (a definite operation that leaves the state as it is) placed
                # as soon as it can be is never wrong: it is forced, not undone to try another
                # candidate instead, and if placing it was explored before and failed, every
                # other choice here fails too.
                forced = definite[op] and after == state
                if _new(seen, placed, placed_info, op, definite[op], after):
                    path.append((position, state, forced))
                    state = after
                    if definite[op]:
                        placed |= 1 << op
                        remaining -= 1
                    else:
                        placed_info |= 1 << op
                    lift(position)
                    position = first()
                    continue
                if forced:
                    position = -1
            if position != -1:
                position = next_of[position]
                continue
        elif best.blocked is None or len(path) > len(best.order):
            # A return: its operation could not be placed before it. Note the deepest point.
            order = tuple(event_op[call] for call, _, _ in path)
            candidates = events.calls_before(position)
            best = Search("violation", steps, order, state, event_op[position], candidates)
        # Undo the last choice that was not forced, then try the candidate after it.
        forced = True
        while forced:
            if not path:
                return _ended(best, "violation", steps, events, path, state)
            call, state, forced = path.pop()
            op = event_op[call]
            if definite[op]:
                placed ^= 1 << op
                remaining += 1
            else:
                placed_info ^= 1 << op
            unlift(call)
        position = next_of[call]
    order = tuple(event_op[call] for call, _, _ in path)
    return Search("linearizable", steps, order, state)


def _new(
    seen: dict[tuple[int, State], list[int]],
    placed: int,
    placed_info: int,
    op: int,
    is_definite: bool,
    state: State,
) -> bool:
    """Note the configuration reached by placing `op`, unless it is no better than one met
    before: the same definite operations placed, the same state, and a subset of these info
    operations placed (whatever that one could still do, this one can only do less of: an info
    operation never placed is one that never took effect)."""
    bit = 1 << op
    key = (placed | bit, state) if is_definite else (placed, state)
    info = placed_info if is_definite else placed_info | bit
    known = seen.get(key)
    if known is None:
        seen[key] = [info]
        return True
    if any(other | info == info for other in known):
        return False
    known[:] = [other for other in known if other | info != other]  # those this one betters
    known.append(info)
    return True


def _ended(
    best: Search[State],
    verdict: Verdict,
    steps: int,
    events: _Events,
    path: list[tuple[int, State, bool]],
    state: State,
) -> Search[State]:
    if best.blocked is None:  # never met a return: the prefix is the current path
        order = tuple(events.op[call] for call, _, _ in path)
        return Search(verdict, steps, order, state)
    return Search(verdict, steps, best.order, best.state, best.blocked, best.candidates)

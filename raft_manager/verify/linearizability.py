"""Is a recorded history of memory operations linearizable? One register per key.

Theory of operation: linearizability is compositional (Herlihy and Wing's locality, the "P" in
P-compositionality): a history is linearizable exactly when the sub-history of every key is, so
each key is checked on its own and a violation on one key neither hides nor disturbs the
verdict on another. A key's operations become a register (register.py); operations that saw
what nothing could have written are reported at once (explained.py); otherwise the search
(wgl.py) looks for a linearization within a step budget.

`check_memory` gives one `KeyResult` per key: linearizable, violation (with a witness: the
longest linearizable prefix, the register's state after it, the operation that could not take
effect before it completed, and the others that were candidates there; or the operation no
write explains, and why) or unknown (the search passed its step budget). Keys are assumed
absent when the history starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from raft_manager.client.history import MEMORY_OPS, HistoryOp

from .explained import unexplained
from .register import INITIAL, Register
from .wgl import Verdict, search

DEFAULT_BUDGET = 1_000_000  # search steps per key (about 1 s)


@dataclass(frozen=True, slots=True)
class Witness:
    """Why a key's history is not linearizable: its longest linearizable prefix (`placed`
    operations; `last` the final few of them, in order), the register after it (`state`), the
    operation that could not take effect before it completed (`blocked`) and the other
    operations that could have gone next there (`concurrent`). Or, found before any search,
    an operation no write explains (`unexplained` says why: then `placed` is 0, `last` and
    `concurrent` empty, `state` None; see explained.py)."""

    placed: int
    last: tuple[HistoryOp, ...]
    state: dict[str, Any] | None
    blocked: HistoryOp
    concurrent: tuple[HistoryOp, ...]
    unexplained: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "unexplained": self.unexplained,
            "placed": self.placed,
            "last": [_op_dict(op) for op in self.last],
            "state": self.state,
            "blocked": _op_dict(self.blocked),
            "concurrent": [_op_dict(op) for op in self.concurrent],
        }


def _op_dict(op: HistoryOp) -> dict[str, Any]:
    return {"line": op.line, **op.as_dict()}


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: str
    verdict: Verdict
    ops: int  # the key's operations in the history
    checked: int  # those that constrain the register (what the search placed)
    steps: int
    witness: Witness | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "verdict": self.verdict,
            "ops": self.ops,
            "checked": self.checked,
            "steps": self.steps,
            "witness": None if self.witness is None else self.witness.as_dict(),
        }


WITNESS_TAIL = 5  # operations of the prefix shown
WITNESS_CONCURRENT = 8  # candidates shown


def check_key(key: str, ops: Sequence[HistoryOp], budget: int = DEFAULT_BUDGET) -> KeyResult:
    """The verdict on one key's memory operations."""
    register = Register(ops)
    alone = unexplained(register)
    if alone is not None:
        position, why = alone
        seen = Witness(0, (), None, register.ops[position], (), unexplained=why)
        return KeyResult(key, "violation", len(ops), len(register.ops), 0, seen)
    found = search(register.intervals(), INITIAL, register.step, budget)
    checked = len(register.ops)
    if found.verdict == "linearizable":
        return KeyResult(key, "linearizable", len(ops), checked, found.steps)
    witness = None
    if found.blocked is not None:
        others = [op for op in found.candidates if op != found.blocked]
        witness = Witness(
            len(found.order),
            tuple(register.ops[op] for op in found.order[-WITNESS_TAIL:]),
            register.describe(found.state),
            register.ops[found.blocked],
            tuple(register.ops[op] for op in others[:WITNESS_CONCURRENT]),
        )
    return KeyResult(key, found.verdict, len(ops), checked, found.steps, witness)


def check_memory(ops: Iterable[HistoryOp], budget: int = DEFAULT_BUDGET) -> list[KeyResult]:
    """One verdict per key (in key order) on the memory operations among `ops`; each key gets
    at most `budget` search steps."""
    by_key: dict[str, list[HistoryOp]] = {}
    for op in ops:
        if op.op in MEMORY_OPS:
            by_key.setdefault(op.data["key"], []).append(op)
    return [check_key(key, by_key[key], budget) for key in sorted(by_key)]

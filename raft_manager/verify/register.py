"""One key of the shared memory as a register, for the linearizability search (wgl.py).

Theory of operation: the register holds (value or absent, version), mirroring ledger/memory.py:
a write stamps the key with its log index as version, which only grows, and an absent key has
version 0. Values are compared as the ledger compares them (JSON equality, types included);
they are interned to small integers, so a state is four integers: the value, the
version (UNKNOWN when an info operation wrote it), how many definite writes are placed, and
`high`, the highest version known to be written so far. A delete takes no version back: every
write after it, whatever the key held, is above `high`. (An unknown version is a log index of
its own, so strictly the next write is above it too, one more than `high` at least; counting
that would tell apart states the search now merges, and made it take 1.5-2.7 times the steps
on histories with many indeterminate writes, for a check that only ever refuses more: it is
left out.) What each operation of a history means:

- get ok: the key is absent (`found` false), or holds `value` at `version`.
- put ok: the key now holds `value` at `version`; the version must exceed the one it replaces
  (log order is real order). cas ok: the same, once its comparison held: the current value
  equals `expected`, or the current version equals `expected_version` (0: absent).
- cas fail `cas_failed`: a read that the comparison did not hold; the key is unchanged.
- delete ok: `existed` says whether the key was present; it is now absent.
- info put, cas, delete: may take effect at any moment after the invoke, or never; when it does,
  the version it wrote is unknown, but above `high`, until a read reveals it (the first read of
  that write binds it, and raises `high` to it). A cas on a version that matched an unknown one
  reveals it too: what the cas writes is above it. An info operation that would change nothing
  is never placed (never taking effect is the same).
- every other fail (the command never reached the log, or the ledger refused it unchanged) and
  every get that is not ok: no effect and no observation; left out.

Definite writes are placed in version order (each carries its rank among them), which prunes
every order the log could not have produced. The register keeps the promise wgl.py asks of a
model: revealing an unknown version only narrows what the state accepts. TTLs are not
modelled.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from raft_manager.client.history import HistoryOp

ABSENT = -1  # the value of an absent key
UNKNOWN = -1  # the version an info operation wrote, until revealed (it is above `high`)
# (value id or ABSENT; version, 0 when absent, or UNKNOWN; definite writes placed so far;
# high: the highest version known written)
RegisterState = tuple[int, int, int, int]
INITIAL: RegisterState = (ABSENT, 0, 0, 0)
Code = tuple[int, int, int, int, int]

# What an operation does to the register (see the module doc), with its arguments.
READ, READ_ABSENT, WRITE, WRITE_INFO = 0, 1, 2, 3
CAS_VALUE, CAS_VALUE_INFO, CAS_VALUE_MISS = 4, 5, 6
CAS_VERSION, CAS_VERSION_INFO, CAS_VERSION_MISS = 7, 8, 9
DELETE, DELETE_INFO = 10, 11


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in for a JSON value with the ledger's equality (types included: true
    is not 1, nor 1 the same as 1.0; ledger/json_values.py)."""
    if isinstance(value, list):
        return ("list", tuple(_frozen(item) for item in value))
    if isinstance(value, dict):
        return ("map", frozenset((name, _frozen(item)) for name, item in value.items()))
    return (type(value).__name__, value)


class Register:
    """One key's operations, encoded as register steps for the search."""

    def __init__(self, ops: Iterable[HistoryOp]) -> None:
        self.ops: list[HistoryOp] = []  # those that constrain the register, in history order
        self.codes: list[Code] = []
        self.values: list[Any] = []  # value id -> the JSON value
        self._ids: dict[Hashable, int] = {}
        for op in ops:
            code = self._encode(op)
            if code is not None:
                self.ops.append(op)
                self.codes.append(code)
        # Definite writes take effect in version order (log order): each gets its rank.
        writes = sorted(
            (code[3], position)
            for position, code in enumerate(self.codes)
            if code[0] in (WRITE, CAS_VALUE, CAS_VERSION)
        )
        for rank, (_, position) in enumerate(writes):
            kind, a, b, c, _ = self.codes[position]
            self.codes[position] = (kind, a, b, c, rank)

    def _id(self, value: Any) -> int:
        frozen = _frozen(value)
        found = self._ids.get(frozen)
        if found is None:
            found = self._ids[frozen] = len(self.values)
            self.values.append(value)
        return found

    def _encode(self, op: HistoryOp) -> Code | None:
        """(kind, a, b, c, rank): see `step` for what a, b and c hold; rank is set later."""
        data, kind = op.data, op.type
        if op.op == "get":
            if kind != "ok":
                return None
            if not data["found"]:
                return (READ_ABSENT, 0, 0, 0, 0)
            return (READ, self._id(data["value"]), data["version"], 0, 0)
        if op.op == "delete":
            if kind == "fail":
                return None
            existed = kind == "ok" and data["existed"]
            return (DELETE_INFO if kind == "info" else DELETE, int(existed), 0, 0, 0)
        value = self._id(data["value"])
        if op.op == "put":
            if kind == "fail":
                return None
            if kind == "info":
                return (WRITE_INFO, value, 0, 0, 0)
            return (WRITE, value, 0, data["version"], 0)
        by_version = "expected_version" in data
        expected = data["expected_version"] if by_version else self._id(data["expected"])
        if kind == "fail":
            if op.data.get("error") != "cas_failed":
                return None
            return (CAS_VERSION_MISS if by_version else CAS_VALUE_MISS, expected, 0, 0, 0)
        if kind == "info":
            return (CAS_VERSION_INFO if by_version else CAS_VALUE_INFO, expected, value, 0, 0)
        return (CAS_VERSION if by_version else CAS_VALUE, expected, value, data["version"], 0)

    def intervals(self) -> list[tuple[int, int | None]]:
        return [(op.invoke, op.complete if op.type != "info" else None) for op in self.ops]

    def step(self, state: RegisterState, op: int) -> RegisterState | None:
        """The register's state after operation `op`, or None if it cannot happen in `state`.
        A definite write must be the next in version order (`rank` == the definite writes
        placed so far) and above `high`. A version written by an info operation is UNKNOWN
        but above the `high` of its time, which stays the same until it is revealed or
        overwritten: a read may reveal it as any version above."""
        kind, a, b, c, rank = self.codes[op]
        value, version, written, high = state
        unknown = version == UNKNOWN
        if kind == READ:  # a: value, b: version
            if value != a:
                return None
            if version == b:
                return state
            return (a, b, written, b) if unknown and b > high else None
        if kind == READ_ABSENT:
            return state if value == ABSENT else None
        # a cas on version `a` holds on a known version equal to it, or on an unknown one that
        # `a` could be (above high): then `a` is what it was, and the cas writes above it.
        matched = version == a or (unknown and a > high)
        seen = max(high, a) if unknown and matched else high
        if kind in (WRITE, CAS_VALUE, CAS_VERSION):  # b: value written, c: its version
            if rank != written:
                return None
            if kind == CAS_VALUE:  # a: the expected value
                held, seen = value == a, high
            elif kind == CAS_VERSION:  # a: the expected version
                held = matched
            else:
                held, b, seen = True, a, high  # a put: a is the value
            return (b, c, written + 1, c) if held and c > seen else None
        if kind == WRITE_INFO:  # a: value
            return None if (value, version) == (a, UNKNOWN) else (a, UNKNOWN, written, high)
        if kind in (CAS_VALUE_INFO, CAS_VALUE_MISS):  # a: expected value, b: value written
            held = value == a
            if kind == CAS_VALUE_MISS:
                return None if held else state
            return (b, UNKNOWN, written, high) if held else None
        if kind in (CAS_VERSION_INFO, CAS_VERSION_MISS):  # a: expected version
            if kind == CAS_VERSION_MISS:
                return state if unknown or not matched else None
            return (b, UNKNOWN, written, seen) if matched else None
        if kind == DELETE:  # a: existed
            return (ABSENT, 0, written, high) if bool(a) == (value != ABSENT) else None
        return (ABSENT, 0, written, high) if value != ABSENT else None  # DELETE_INFO

    def describe(self, state: RegisterState) -> dict[str, Any]:
        value, version, _, _ = state
        if value == ABSENT:
            return {"found": False}
        return {
            "found": True,
            "value": self.values[value],
            "version": None if version < 0 else version,
        }

"""Operations no write can explain: found before the search, and shown alone.

Theory of operation: the search (wgl.py) proves a violation only by exhausting every order of
the operations before the one that cannot be placed, which can take it past its budget when
many indeterminate writes overlap. Two common violations need no search, only the writes of the
key (register.py) and when they were invoked and acknowledged:

- nothing wrote it: a get saw a value at a version that no definite write had and no info write
  of that value could have had, a cas matched a value or a version nobody wrote, or a delete
  found a key nobody wrote, in every case counting only writes invoked before it completed;
- a stale read: a get saw the write of a definite write W (its value, at its version), but a
  definite write with a larger version was acknowledged before the get was invoked, and no
  info write of that value exists. Definite writes take effect in version order, so the newer
  one took effect after W and before the get; after it only W could write W's version, and W
  took effect once.

Each rule is a necessary condition of linearizability, so what it reports is a violation; what
it misses, the search finds. The first such operation (by completion) is the witness.
"""

from __future__ import annotations

import bisect

from raft_manager.client.history import HistoryOp

from .register import (
    CAS_VALUE,
    CAS_VALUE_INFO,
    CAS_VERSION,
    CAS_VERSION_INFO,
    DELETE,
    READ,
    WRITE,
    WRITE_INFO,
    Register,
)

NEVER = 1 << 62
DEFINITE_WRITES = (WRITE, CAS_VALUE, CAS_VERSION)
INFO_WRITES = (WRITE_INFO, CAS_VALUE_INFO, CAS_VERSION_INFO)


class _Writes:
    """When the key's writes were invoked, by value and by version; and the largest version
    acknowledged by each moment."""

    def __init__(self, register: Register) -> None:
        self.first_info = NEVER  # the earliest invoke of an info write
        self.by_value: dict[int, int] = {}  # value -> the earliest invoke of a write of it
        self.info_by_value: dict[int, int] = {}  # the same, info writes only
        self.by_version: dict[int, int] = {}  # version of a definite write -> its invoke
        self.exact: dict[tuple[int, int], HistoryOp] = {}  # (value, version) -> its write
        acknowledged: list[tuple[int, int, HistoryOp]] = []
        for op, (kind, a, b, c, _) in zip(register.ops, register.codes, strict=True):
            if kind in DEFINITE_WRITES:
                value = a if kind == WRITE else b
                self.by_version[c] = min(self.by_version.get(c, NEVER), op.invoke)
                self.exact.setdefault((value, c), op)
                acknowledged.append((op.complete, c, op))
            elif kind in INFO_WRITES:
                value = a if kind == WRITE_INFO else b
                self.first_info = min(self.first_info, op.invoke)
                self.info_by_value[value] = min(self.info_by_value.get(value, NEVER), op.invoke)
            else:
                continue
            self.by_value[value] = min(self.by_value.get(value, NEVER), op.invoke)
        self.first_write = min((self.first_info, *self.by_version.values()), default=NEVER)
        acknowledged.sort(key=lambda item: item[:2])
        self._times = [complete for complete, _, _ in acknowledged]
        self._newest: list[HistoryOp] = []  # the largest version acknowledged so far
        for _, version, op in acknowledged:
            if not self._newest or version > _version(self._newest[-1]):
                self._newest.append(op)
            else:
                self._newest.append(self._newest[-1])

    def newest_before(self, moment: int) -> HistoryOp | None:
        """The definite write of the largest version acknowledged before `moment`."""
        position = bisect.bisect_left(self._times, moment)
        return self._newest[position - 1] if position else None


def _version(op: HistoryOp) -> int:
    version: int = op.data["version"]
    return version


def _where(op: HistoryOp) -> str:
    return f"line {op.line}" if op.line else f"the write by process {op.process}"


def unexplained(register: Register) -> tuple[int, str] | None:
    """The first operation (by completion) that no write explains, and why; None if every
    operation has a write that could explain it."""
    writes = _Writes(register)
    found: list[tuple[int, int, str]] = []
    for position, (op, (kind, a, b, _, _)) in enumerate(
        zip(register.ops, register.codes, strict=True)
    ):
        why = None
        if kind == READ:
            source = writes.exact.get((a, b))
            info = writes.info_by_value.get(a, NEVER)
            earliest = min(source.invoke if source else NEVER, info)
            newer = writes.newest_before(op.invoke)
            if earliest > op.complete:
                why = "saw what no operation invoked before it completed could have written"
            elif info == NEVER and newer is not None and _version(newer) > b:
                why = (
                    f"saw a stale write: {_where(newer)} wrote version {_version(newer)} over "
                    "it, acknowledged before this get was invoked"
                )
        elif kind == CAS_VALUE and writes.by_value.get(a, NEVER) > op.complete:
            why = "matched a value no operation invoked before it completed could have written"
        elif kind == CAS_VERSION and a > 0:
            if min(writes.by_version.get(a, NEVER), writes.first_info) > op.complete:
                why = "matched a version no operation invoked before it completed could have had"
        elif kind == DELETE and a and writes.first_write > op.complete:
            why = "found the key, which no operation invoked before it completed could have written"
        if why is not None:
            found.append((op.complete, position, why))
    if not found:
        return None
    _, position, why = min(found)
    return position, why

"""Histories for the checkers' tests: hand-written operations, and random histories that are
linearizable by construction (a sequential register run at random moments inside random
overlapping intervals)."""

from __future__ import annotations

import random
from typing import Any

from raft_manager.client.history import HistoryOp

MS = 1_000_000  # the history's clock is in nanoseconds


def op(
    process: int | str, name: str, start: float, end: float, kind: str = "ok", **data: Any
) -> HistoryOp:
    """An operation from `start` to `end` milliseconds."""
    return HistoryOp(process, name, kind, round(start * MS), round(end * MS), data)


def get(
    p: int, key: str, start: float, end: float, value: Any = None, version: int = 0
) -> HistoryOp:
    """A get that found `value` at `version` (version 0: found nothing)."""
    if version == 0:
        return op(p, "get", start, end, key=key, found=False)
    return op(p, "get", start, end, key=key, found=True, value=value, version=version)


def put(p: int, key: str, start: float, end: float, value: Any, version: int) -> HistoryOp:
    return op(p, "put", start, end, key=key, value=value, version=version)


def put_info(p: int, key: str, start: float, end: float, value: Any) -> HistoryOp:
    return op(p, "put", start, end, "info", key=key, value=value, error="timeout")


class _Register:
    def __init__(self) -> None:
        self.value: Any = None
        self.version = 0  # 0: absent


def random_history(
    rng: random.Random,
    count: int,
    keys: int = 1,
    processes: int = 5,
    info_rate: float = 0.05,
) -> list[HistoryOp]:
    """`count` operations by `processes` sequential clients on `keys` keys, linearizable by
    construction: each operation takes effect at a random moment inside its interval (an info
    one at any moment after its invoke, even after its complete, or never), and what it saw is
    computed by running the register in that order. Versions grow like log indexes, and every
    write writes a value of its own (its version)."""
    planned: list[tuple[float, int, dict[str, Any]]] = []  # (effect moment, process, plan)
    clock = [0.0] * processes
    for _ in range(count):
        process = rng.randrange(processes)
        start = clock[process] + rng.uniform(0.0, 2.0)
        end = start + rng.uniform(0.1, 5.0)
        clock[process] = end
        plan: dict[str, Any] = {
            "name": rng.choice(("get", "get", "put", "put", "cas", "delete")),
            "key": f"k{rng.randrange(keys)}",
            "start": start,
            "end": end,
            "info": rng.random() < info_rate,
        }
        if plan["name"] == "get":
            plan["info"] = False
        effect = rng.uniform(start, end)
        if plan["info"]:
            effect = start + rng.uniform(0.0, 20.0) if rng.random() < 0.7 else float("inf")
        planned.append((effect, process, plan))
    planned.sort(key=lambda item: item[0])
    registers: dict[str, _Register] = {}
    index = 0
    history: list[HistoryOp] = []
    for effect, process, plan in planned:
        index += rng.randint(1, 3)  # other entries come between
        register = registers.setdefault(plan["key"], _Register())
        history.append(_run(rng, register, process, plan, index, effect != float("inf")))
    history.sort(key=lambda item: item.complete)
    return history


def _run(
    rng: random.Random,
    register: _Register,
    process: int,
    plan: dict[str, Any],
    index: int,
    takes_effect: bool,
) -> HistoryOp:
    name, key, start, end = plan["name"], plan["key"], plan["start"], plan["end"]
    value = index  # unique: every write writes its own value
    kind = "info" if plan["info"] else "ok"
    extra: dict[str, Any] = {"error": "timeout"} if plan["info"] else {}
    if name == "get":
        return get(process, key, start, end, register.value, register.version)
    if name == "put":
        if takes_effect:
            register.value, register.version = value, index
        if kind == "ok":
            extra["version"] = index
        return op(process, "put", start, end, kind, key=key, value=value, **extra)
    if name == "delete":
        existed = register.version != 0
        if takes_effect:
            register.value, register.version = None, 0
        if kind == "ok":
            extra["existed"] = existed
        return op(process, "delete", start, end, kind, key=key, **extra)
    by_version = rng.random() < 0.5
    if by_version:
        expected = register.version if rng.random() < 0.6 else rng.randrange(index + 1)
        compared: dict[str, Any] = {"expected_version": expected}
        held = register.version == expected
    else:
        expected = register.value if rng.random() < 0.6 else rng.randrange(index + 1)
        compared = {"expected": expected}
        held = register.version != 0 and register.value == expected
    if held and takes_effect:
        register.value, register.version = value, index
    if kind == "ok" and held:
        extra["version"] = index
    elif kind == "ok":
        kind, extra = "fail", {"error": "cas_failed"}
    return op(process, "cas", start, end, kind, key=key, value=value, **compared, **extra)


def stale_read(history: list[HistoryOp], rng: random.Random) -> list[HistoryOp] | None:
    """The history with one ok get made stale (None if it has no get to make stale): it now
    returns a write that an acknowledged write with a larger version replaced before the get
    was invoked. With values unique to their writes, that is never linearizable, and only a
    search can tell (the write it returns was invoked before the get completed)."""
    definite = [item for item in history if item.op in ("put", "cas") and item.type == "ok"]
    choices = []
    for position, read in enumerate(history):
        if read.op != "get" or read.type != "ok":
            continue
        key = read.data["key"]
        newer = [w for w in definite if w.data["key"] == key and w.complete < read.invoke]
        if not newer:
            continue
        newest = max(w.data["version"] for w in newer)
        older = [w for w in definite if w.data["key"] == key and w.data["version"] < newest]
        if older:
            choices.append((position, rng.choice(older)))
    if not choices:
        return None
    position, old = rng.choice(choices)
    read = history[position]
    data = {"key": read.data["key"], "found": True, "value": old.data["value"]}
    mutated = list(history)
    mutated[position] = HistoryOp(
        read.process,
        "get",
        "ok",
        read.invoke,
        read.complete,
        {**data, "version": old.data["version"]},
    )
    return mutated

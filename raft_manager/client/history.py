"""Histories of operations as clients saw them: the format, its reader, and the recorder.

Theory of operation: a history is a file of JSON lines, one per operation, written when the
operation ends. Every line has the process that ran it (a logical client: an int or a string),
the op, its type, and the readings of one monotonic clock (`time.monotonic_ns`, system-wide, so
several processes on one machine may share a file) when it was invoked and when it completed:

- `ok`: it took effect, exactly once, at some moment between its invoke and its complete; the
  line carries what the cluster answered (`version`, `found`, `token`, ...).
- `fail`: it certainly took no effect (the ledger refused it, or it never reached the log);
  `error` says why. A refused compare-and-set (`cas_failed`) is still an observation: at some
  moment in its interval the key did not hold what it expected.
- `info`: unknown (timed out, connection lost, cancelled): it may take effect at any moment
  after its invoke, or never; its `complete` is only when the client stopped waiting.

The op-specific fields (inputs always; outputs only when `ok`) are listed in `FIELDS`, and
`validate` holds every line to them, so a checker never meets a half-formed operation; a bad
line read from a file is a `HistoryError` naming its line. `HistoryRecorder` appends lines under
a lock (tasks and threads may share it) and flushes each one, so a history survives a crash of
the recording process up to its last completed operation. The wrappers that run operations and
record them are in recording.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

TYPES = ("ok", "fail", "info")
MEMORY_OPS = ("get", "put", "cas", "delete")
TASK_OPS = ("task.submit", "task.claim", "task.renew", "task.complete", "task.fail", "task.list")
COMMON = ("process", "op", "type", "invoke", "complete", "error")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _int(low: int) -> Any:
    def check(value: Any) -> bool:
        return type(value) is int and value >= low

    return check


def _any(value: Any) -> bool:
    return True


def _flag(value: Any) -> bool:
    return type(value) is bool


def _text_or_null(value: Any) -> bool:
    return value is None or _text(value)


def _task_views(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    return all(
        isinstance(view, dict)
        and _text(view.get("id"))
        and _text(view.get("state"))
        and _text_or_null(view.get("agent"))
        and _INT0(view.get("token"))
        and type(view.get("lease_until")) is int
        for view in value
    )


_WHAT = {
    _text: "a non-empty string",
    _any: "any JSON value",
    _flag: "true or false",
    _text_or_null: "a non-empty string or null",
    _task_views: 'a list of {"id", "state", "agent", "token", "lease_until"}',
}
_INT0, _INT1, _INTEGER = _int(0), _int(1), _int(-(1 << 62))
_WHAT.update({_INT0: "an integer >= 0", _INT1: "an integer >= 1", _INTEGER: "an integer"})


@dataclass(frozen=True, slots=True)
class Fields:
    """An op's fields besides the common ones: inputs (required, optional) and the outputs an
    `ok` line carries (required, optional)."""

    inputs: Mapping[str, Any]
    optional_inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    optional_outputs: Mapping[str, Any] = field(default_factory=dict)


FIELDS: dict[str, Fields] = {
    "get": Fields(
        {"key": _text}, outputs={"found": _flag}, optional_outputs={"value": _any, "version": _INT1}
    ),
    "put": Fields({"key": _text, "value": _any}, outputs={"version": _INT1}),
    "cas": Fields(
        {"key": _text, "value": _any},
        optional_inputs={"expected": _any, "expected_version": _INT0},
        outputs={"version": _INT1},
    ),
    "delete": Fields({"key": _text}, outputs={"existed": _flag}),
    "task.submit": Fields({}, optional_inputs={"task": _text}),
    "task.claim": Fields(
        {"agent": _text, "lease_ms": _INT1},
        outputs={"task": _text_or_null},
        optional_outputs={"token": _INT1, "lease_until": _INTEGER},
    ),
    "task.renew": Fields(
        {"task": _text, "agent": _text, "token": _INT1, "lease_ms": _INT1},
        outputs={"lease_until": _INTEGER},
    ),
    "task.complete": Fields({"task": _text, "agent": _text, "token": _INT1}),
    "task.fail": Fields({"task": _text, "agent": _text, "token": _INT1}),
    "task.list": Fields({"limit": _INT1}, outputs={"tasks": _task_views}),
}
_CHECKS = {
    op: {**spec.inputs, **spec.optional_inputs, **spec.outputs, **spec.optional_outputs}
    for op, spec in FIELDS.items()
}


def _rules(op: str, kind: str, data: Mapping[str, Any]) -> str | None:
    """The rules that tie fields together; what is wrong, or None."""
    ok = kind == "ok"
    if op == "get" and ok and data["found"] != ("value" in data and "version" in data):
        return "a get that found the key has value and version, one that did not has neither"
    if op == "get" and ok and not data["found"] and ("value" in data or "version" in data):
        return "a get that found nothing has no value or version"
    if op == "cas" and ("expected" in data) == ("expected_version" in data):
        return "a cas compares either on expected or on expected_version: exactly one"
    if op == "task.submit" and ok and "task" not in data:
        return "an ok submit names the task it created"
    if op == "task.claim" and ok:
        claimed = data["task"] is not None
        if claimed != ("token" in data and "lease_until" in data):
            return "a claim that got a task has token and lease_until, one that did not neither"
        if not claimed and ("token" in data or "lease_until" in data):
            return "a claim that got no task has no token or lease_until"
    return None


def validate(line: Mapping[str, Any]) -> None:
    """ValueError saying what is wrong with one history line (a decoded JSON object)."""
    process = line.get("process")
    if not (type(process) is int or _text(process)):
        raise ValueError(f"process must be an integer or a non-empty string, not {process!r}")
    op, kind = line.get("op"), line.get("type")
    if not (isinstance(op, str) and op in FIELDS):
        raise ValueError(f"op must be one of {', '.join(FIELDS)}, not {op!r}")
    spec = FIELDS[op]
    if not (isinstance(kind, str) and kind in TYPES):
        raise ValueError(f"type must be ok, fail or info, not {kind!r}")
    invoke, complete = line.get("invoke"), line.get("complete")
    if not (type(invoke) is int and type(complete) is int and invoke >= 0):
        raise ValueError("invoke and complete must be integers >= 0 (nanoseconds)")
    if complete < invoke:
        raise ValueError(f"complete ({complete}) is before invoke ({invoke})")
    error = line.get("error")
    if kind == "fail" and not _text(error):
        raise ValueError("a fail line says why in error (a non-empty string)")
    if error is not None and (kind == "ok" or not _text(error)):
        raise ValueError("error is a non-empty string, on fail and info lines only")
    allowed = {*COMMON, *spec.inputs, *spec.optional_inputs}
    required = dict(spec.inputs)
    if kind == "ok":
        allowed |= {*spec.outputs, *spec.optional_outputs}
        required |= spec.outputs
    article = "a" if kind == "fail" else "an"
    for name in required:
        if name not in line:
            raise ValueError(f"{article} {kind} {op} line needs {name}")
    checks = _CHECKS[op]
    for name, value in line.items():
        if name not in allowed:
            raise ValueError(f"unexpected field {name!r} on {article} {kind} {op} line")
        check = checks.get(name)
        if check is not None and not check(value):
            raise ValueError(f"{name} must be {_WHAT[check]}, not {value!r}")
    problem = _rules(op, kind, line)
    if problem is not None:
        raise ValueError(problem)


@dataclass(frozen=True, slots=True)
class HistoryOp:
    """One operation of a history: the common fields, the op-specific ones in `data`, and the
    line it was read from (0 when it was not read from a file)."""

    process: int | str
    op: str
    type: str
    invoke: int
    complete: int
    data: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The history line (without the line number)."""
        head = {"process": self.process, "op": self.op}
        tail = {"type": self.type, "invoke": self.invoke, "complete": self.complete}
        return {**head, **self.data, **tail}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, line: Mapping[str, Any], number: int = 0) -> HistoryOp:
        """ValueError if `line` breaks the format."""
        validate(line)
        data = {name: value for name, value in line.items() if name not in COMMON[:5]}
        return cls(
            line["process"],
            line["op"],
            line["type"],
            line["invoke"],
            line["complete"],
            data,
            number,
        )


class HistoryError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        names = [name for name, _ in pairs]
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"field {twice[0]!r} appears twice")
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_line(text: str, number: int) -> HistoryOp:
    """One line of a history file; HistoryError naming the line if it is not one."""
    try:
        line = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as error:  # json.JSONDecodeError included
        raise HistoryError(number, f"not JSON: {error}") from None
    if not isinstance(line, dict):
        raise HistoryError(number, f"a history line is a JSON object, not {type(line).__name__}")
    try:
        return HistoryOp.from_dict(line, number)
    except ValueError as error:
        raise HistoryError(number, str(error)) from None


def parse_history(lines: Iterable[str]) -> list[HistoryOp]:
    """Every operation of a history's lines (blank lines are skipped); HistoryError at the
    first bad line."""
    return [parse_line(text, number) for number, text in enumerate(lines, 1) if text.strip()]


def read_history(path: str | os.PathLike[str]) -> list[HistoryOp]:
    """A history file's operations: HistoryError for a bad line, OSError if it is unreadable."""
    with Path(path).open(encoding="utf-8") as lines:
        return parse_history(lines)


class HistoryRecorder:
    """Appends one validated line per operation to a file (a path: opened for appending and
    closed with the recorder; or an open text file, left open). Safe to share between tasks
    and threads: each line is written whole, under a lock, and flushed."""

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        if isinstance(target, str | os.PathLike):
            self._file: IO[str] = Path(target).open("a", encoding="utf-8")  # noqa: SIM115
            self._owned = True
        else:
            self._file, self._owned = target, False
        self._lock = threading.Lock()
        self.count = 0

    @staticmethod
    def now() -> int:
        """The history's clock: nanoseconds on the system's monotonic clock."""
        return time.monotonic_ns()

    def record(self, op: HistoryOp) -> None:
        """Append `op`; ValueError (and nothing written) if it breaks the format."""
        line = op.as_dict()
        validate(line)
        text = json.dumps(line, allow_nan=False) + "\n"
        with self._lock:
            self._file.write(text)
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._owned and not self._file.closed:
                self._file.close()

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

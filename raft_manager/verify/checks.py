"""A check's verdict and its one line: what `raft-manager verify` and the hooks print.

Theory of operation: every check, whatever it looks at, ends as one `Check`: ok, FAIL, or skip
(it could not be made: say why), and one line of text for people, e.g.
`ok   leader n2, term 4` or `FAIL node n3 lags 1,204 entries behind commit 9,876`. The exit
code of a run of checks follows from them: 2 when the cluster could not be reached at all,
else 1 when any check failed, else 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

OK, FAILED, UNREACHABLE = 0, 1, 2


class Verdict(Enum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    text: str

    @classmethod
    def passed(cls, text: str) -> Check:
        return cls(Verdict.OK, text)

    @classmethod
    def failed(cls, text: str) -> Check:
        return cls(Verdict.FAIL, text)

    @classmethod
    def skipped(cls, text: str) -> Check:
        return cls(Verdict.SKIP, text)

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.FAIL

    def line(self) -> str:
        return f"{self.verdict.value:<4} {self.text}"

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "text": self.text}


def exit_code(checks: Iterable[Check], reachable: bool = True) -> int:
    if not reachable:
        return UNREACHABLE
    return OK if all(check.ok for check in checks) else FAILED

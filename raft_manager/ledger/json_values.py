"""JSON values as JSON sees them: their equality, and the numbers JSON has.

Theory of operation: Python's == says True == 1 and 1 == 1.0, so a compare-and-set expecting 1
would match a key holding true, and a task resubmitted with payload {"x": true} would count as
the one submitted with {"x": 1}. `same` compares the decoded values with their types: booleans,
integers, floats, strings, null, and arrays and objects of them, element by element (object
keys in any order). `finite` says a value holds no NaN or infinity: JSON has neither, and
one kept would be written (and read back) as null. Both walk without recursion: a value may
be nested as deep as its size allows.
"""

from __future__ import annotations

import math
from typing import Any


def same(a: Any, b: Any) -> bool:
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            pending.extend((x[name], y[name]) for name in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


def finite(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is float:
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True

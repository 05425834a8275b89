"""Equality of JSON values as JSON sees them, for every rule that compares stored values.

Theory of operation: Python's == says True == 1 and 1 == 1.0, so a compare-and-set expecting 1
would match a key holding true, and a task resubmitted with payload {"x": true} would count as
the one submitted with {"x": 1}. `same` compares the decoded values with their types: booleans,
integers, floats, strings, null, and arrays and objects of them, element by element (object
keys in any order). It walks without recursion: a value may be nested as deep as its size
allows.
"""

from __future__ import annotations

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

"""DIR/pids.json: the process ids of a local cluster's node processes, by node id.

Theory of operation: whoever starts nodes in the background (`cluster up`, `cluster add`,
`demo --keep`, the chaos harness) records their pids here, and `cluster down` and `cluster
remove` stop them by pid. Every write replaces the file whole (a temporary file renamed over
it), so a reader never sees half of one; a file that is not a map of node ids to pids is
refused with PidFileError, which names it, instead of a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

PIDS = "pids.json"


class PidFileError(ValueError):
    """The pid file cannot be read as {node id: pid}."""


class PidFile:
    def __init__(self, directory: Path) -> None:
        self.path = directory / PIDS

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, int]:
        """The recorded pids; {} when there is no file."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise PidFileError(f"{self.path}: {error}") from None
        try:
            pids = json.loads(text)
        except ValueError as error:
            raise PidFileError(f"{self.path} is not JSON: {error}") from None
        valid = isinstance(pids, dict) and all(
            isinstance(node, str) and type(pid) is int and pid > 0 for node, pid in pids.items()
        )
        if not valid:
            raise PidFileError(f"{self.path} is not a map of node ids to process ids")
        return dict(pids)

    def write(self, pids: Mapping[str, int]) -> None:
        partial = self.path.with_name(PIDS + ".partial")
        partial.write_text(json.dumps(dict(pids)))
        os.replace(partial, self.path)

    def add(self, node: str, pid: int) -> None:
        self.write({**self.read(), node: pid})

    def pop(self, node: str) -> int | None:
        """Forget `node`'s pid and return it (None if none was recorded)."""
        pids = self.read()
        pid = pids.pop(node, None)
        if pid is not None:
            self.write(pids)
        return pid

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)

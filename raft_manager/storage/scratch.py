"""Throwaway on-disk storage for simulated nodes: real files, one directory per seed and node.

Segments are small (64 KiB) so that rotation and segment deletion happen within a short run, and
fsync is off: a simulated crash kills a node, not the machine, so the page cache survives it just
as it survives a real process crash (the power-loss cases have their own tests).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .file import FileStorage

SCRATCH_SEGMENT_BYTES = 64 << 10


class ScratchDisks:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def open(self, seed: int, node_id: str) -> FileStorage:
        return FileStorage(
            self.root / f"seed-{seed}" / node_id, segment_bytes=SCRATCH_SEGMENT_BYTES, fsync=False
        )

    def discard(self, seed: int) -> None:
        shutil.rmtree(self.root / f"seed-{seed}", ignore_errors=True)

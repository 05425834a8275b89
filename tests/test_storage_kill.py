"""Kill -9 a process that is writing FileStorage; everything it reported durable must survive.

A child process opens FileStorage (fsync on, 64 KiB segments), loads it, and keeps appending
batches of entries with a hard state (and now and then compacts), printing the last index and
hard state after every save() returns. The parent SIGKILLs it at a random moment - after some
number of reports or after a short sleep - twenty times in a row on the same directory; each child
continues from what it recovered. After every kill the parent reopens the storage and checks that
every index the child reported is there (in the log, or covered by the snapshot) with the term it
was written with, that the log is contiguous, and that the hard state is at least the last one
reported.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from storage_helpers import payload

from raft_manager.core import HardState, RestoredState
from raft_manager.storage import FileStorage

SEGMENT_BYTES = 64 << 10
RUNS = 20

CHILD = r"""
import random, sys, time
from raft_manager.core import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raft_manager.storage import FileStorage

def payload(index, term, size):
    unit = f"<{index}:{term}>".encode()
    return (unit * (size // len(unit) + 1))[:size]

directory, seed, segment_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
storage = FileStorage(directory, segment_bytes=segment_bytes, fsync=True)
restored = storage.load()
offset = restored.snapshot.meta.index if restored.snapshot else 0
terms = {entry.index: entry.term for entry in restored.entries}
last = restored.entries[-1].index if restored.entries else offset
term = restored.hard_state.term + 1
print(f"ready {last} {restored.hard_state.term} {restored.hard_state.commit}", flush=True)
deadline = time.monotonic() + 20  # never outlive a parent that failed to kill us
compacted = True
while time.monotonic() < deadline:
    count = rng.randint(1, 24)
    size = rng.choice([0, 10, 100, 600, 2500])
    indexes = range(last + 1, last + count + 1)
    entries = [Entry(index, term, data=payload(index, term, size)) for index in indexes]
    hard_state = HardState(term, "n1", last + count)
    storage.save(hard_state, entries, None)
    for entry in entries:
        terms[entry.index] = term
    last += count
    print(f"{last} {term} {last}", flush=True)
    compacted = False
    if rng.random() < 0.15 and last > offset + 1:
        index = rng.randint(offset + 1, last - 1)
        meta = SnapshotMeta(index, terms[index], ConfState(("n1", "n2", "n3")))
        storage.compact(Snapshot(meta, payload(index, terms[index], 64)))
        for gone in range(offset + 1, index + 1):
            del terms[gone]
        offset = index
        print(f"compacted {index}", flush=True)
"""


@dataclass
class Reports:
    """What the children said was durable."""

    last: int = 0
    hard_state: HardState = field(default_factory=HardState)
    terms: dict[int, int] = field(default_factory=dict)  # index -> term, as reported
    compactions: int = 0
    saves: int = 0

    def take(self, line: str) -> None:
        words = line.split()
        assert (words and words[0] in ("ready", "compacted")) or len(words) == 3, repr(line)
        if words[0] == "compacted":
            self.compactions += 1
            return
        if words[0] == "ready":
            # The child continues after what it recovered, which may go beyond the last report
            # (entries written but not reported); those are durable now too, of unknown term.
            self.last = max(self.last, int(words[1]))
            return
        last, term, commit = map(int, words)
        for index in range(self.last + 1, last + 1):
            self.terms[index] = term
        self.last = last
        self.hard_state = HardState(term, "n1", commit)
        self.saves += 1


def check(state: RestoredState, reports: Reports, context: str) -> None:
    hard_state, snapshot, entries = state
    assert hard_state.term >= reports.hard_state.term, context
    assert hard_state.commit >= reports.hard_state.commit, context
    offset = 0
    if snapshot is not None:
        offset = snapshot.meta.index
        expected_term = reports.terms.get(offset, snapshot.meta.term)
        assert snapshot.meta.term == expected_term, context
        assert snapshot.data == payload(offset, snapshot.meta.term, 64), context
    indexes = [entry.index for entry in entries]
    assert indexes == list(range(offset + 1, offset + 1 + len(entries))), f"{context}: a gap"
    last = indexes[-1] if indexes else offset
    assert last >= reports.last, f"{context}: reported {reports.last}, recovered {last}"
    for entry in entries:
        assert entry.term == reports.terms.get(entry.index, entry.term), context
        assert entry.data == payload(entry.index, entry.term, len(entry.data)), context
        assert entry.term <= hard_state.term, context


def run_child(
    directory: Path, seed: int, rng: random.Random, reports: Reports
) -> tuple[list[str], str]:
    """Start a child, let it write, SIGKILL it; returns the lines it printed and its stderr."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(seed), str(SEGMENT_BYTES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        if not first.startswith("ready"):
            child.kill()
            _, stderr = child.communicate()
            raise AssertionError(f"the child did not start: {first!r} {stderr}")
        lines.append(first)
        if rng.random() < 0.5:
            for _ in range(rng.randint(0, 40)):  # kill right after the k-th report
                line = child.stdout.readline()
                if not line:
                    break
                lines.append(line)
            time.sleep(rng.choice([0, 0, rng.uniform(0, 0.004)]))
        else:
            time.sleep(rng.uniform(0, 0.08))
        child.send_signal(signal.SIGKILL)
        rest, stderr = child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    lines += rest.splitlines(keepends=True)
    assert child.returncode == -signal.SIGKILL, (child.returncode, stderr)
    return [line for line in lines if line.endswith("\n")], stderr  # a cut-off line is not a report


def test_everything_a_killed_writer_reported_survives(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    reports = Reports()
    started = time.monotonic()
    for run in range(RUNS):
        lines, _ = run_child(tmp_path, rng.randrange(1 << 30), rng, reports)
        recovered_at_start = int(lines[0].split()[1])
        assert recovered_at_start >= reports.last, f"run {run} started below a reported index"
        for line in lines:
            reports.take(line)
        storage = FileStorage(tmp_path, segment_bytes=SEGMENT_BYTES)
        try:
            check(storage.load(), reports, f"after kill {run}")
        finally:
            storage.close()
    elapsed = time.monotonic() - started
    # The runs did write, compact and rotate (so the kills could land anywhere).
    assert reports.saves >= RUNS and reports.compactions >= 2, (reports.saves, reports.compactions)
    assert not (tmp_path / "wal" / f"{1:016x}.wal").exists()  # compaction deleted old segments
    assert elapsed < 30

"""Benchmark of the write-ahead log against the machine's own limit, measured in the same run.

  (a) the limit: os.write of 100 records of 256 bytes (one write) + one fsync, in a loop;
      also with fdatasync, since the WAL syncs with fdatasync: the ratio is taken against the
      faster of the two, so the WAL is never flattered;
  (b) FileStorage.save of 100 entries of 256 bytes (one READY record, one fdatasync) in a loop;
  (c) opening (recovering) a log of 1,000,000 entries with a snapshot at 900,000.

(a) and (b) run interleaved in several rounds, and the medians are reported, so that a burst of
disk activity from elsewhere hits both sides alike.
Targets: (b) / (a) >= 0.7; (c) <= 2 s.
Usage: python benchmarks/storage_bench.py [--batches N] [--rounds R] [--entries N] [--json]
       [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from raft_manager.core import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from raft_manager.storage import FileStorage

RECORD = 256
BATCH = 100


def raw_limit(directory: Path, batches: int, sync: Callable[[int], None]) -> float:
    """Batches per second of one write of BATCH x RECORD bytes followed by one sync."""
    payload = os.urandom(RECORD) * BATCH
    fd = os.open(directory / f"raw-{sync.__name__}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        started = time.perf_counter()
        for _ in range(batches):
            os.write(fd, payload)
            sync(fd)
        return batches / (time.perf_counter() - started)
    finally:
        os.close(fd)


def wal_appends(directory: Path, batches: int) -> float:
    """Batches per second of FileStorage.save with BATCH entries of RECORD bytes each."""
    storage = FileStorage(directory / "wal-bench")
    restored = storage.load()
    start = restored.entries[-1].index if restored.entries else 0
    data = os.urandom(RECORD)
    prepared = [
        [Entry(start + b * BATCH + k + 1, 1, EntryType.NORMAL, data) for k in range(BATCH)]
        for b in range(batches)
    ]
    try:
        started = time.perf_counter()
        for number, entries in enumerate(prepared):
            storage.save(HardState(1, "n1", number * BATCH), entries, None)
        return batches / (time.perf_counter() - started)
    finally:
        storage.close()


def reopen(directory: Path, total: int, snapshot_at: int) -> dict[str, float]:
    path = directory / "reopen-bench"
    storage = FileStorage(path, fsync=False)
    storage.load()
    data = os.urandom(RECORD)
    step = 1000
    for first in range(1, total + 1, step):
        entries = [Entry(first + k, 1, EntryType.NORMAL, data) for k in range(step)]
        storage.save(HardState(1, "n1", first - 1), entries, None)
        if first + step - 1 == snapshot_at:
            meta = SnapshotMeta(snapshot_at, 1, ConfState(("n1", "n2", "n3")))
            storage.compact(Snapshot(meta, b"state machine image"))
    storage.close()
    on_disk = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    started = time.perf_counter()
    reopened = FileStorage(path)
    restored = reopened.load()
    seconds = time.perf_counter() - started
    reopened.close()
    assert restored.snapshot is not None and restored.snapshot.meta.index == snapshot_at
    assert len(restored.entries) == total - snapshot_at
    return {"seconds": seconds, "entries_loaded": len(restored.entries), "bytes_on_disk": on_disk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=500, help="batches per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a tmp dir)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        directory = Path(scratch)
        rounds = []
        for _ in range(args.rounds):
            fsync_rate = raw_limit(directory, args.batches, os.fsync)
            fdatasync_rate = raw_limit(directory, args.batches, os.fdatasync)
            wal_rate = wal_appends(directory, args.batches)
            rounds.append((fsync_rate, fdatasync_rate, wal_rate))
        recovery = reopen(directory, args.entries, args.entries * 9 // 10)
    fsync_rate = statistics.median(r[0] for r in rounds)
    fdatasync_rate = statistics.median(r[1] for r in rounds)
    wal_rate = statistics.median(r[2] for r in rounds)
    ratio = statistics.median(r[2] / max(r[0], r[1]) for r in rounds)
    report = {
        "raw_fsync_entries_per_second": fsync_rate * BATCH,
        "raw_fdatasync_entries_per_second": fdatasync_rate * BATCH,
        "wal_entries_per_second": wal_rate * BATCH,
        "wal_vs_limit": ratio,
        "rounds": args.rounds,
        "reopen": recovery,
        "targets": {"wal_vs_limit": 0.7, "reopen_seconds": 2.0},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"raw write+fsync:     {fsync_rate * BATCH:12,.0f} entries/s ({BATCH} x {RECORD} B)")
    print(f"raw write+fdatasync: {fdatasync_rate * BATCH:12,.0f} entries/s")
    print(f"WAL save:            {wal_rate * BATCH:12,.0f} entries/s")
    print(f"WAL / limit:         {ratio:.3f} (median of {args.rounds} rounds; target >= 0.7)")
    print(
        f"reopen {args.entries:,} entries, snapshot at {args.entries * 9 // 10:,}: "
        f"{recovery['seconds']:.3f} s, {recovery['entries_loaded']:,} entries loaded, "
        f"{recovery['bytes_on_disk'] / 2**20:.0f} MiB on disk (target <= 2 s)"
    )


if __name__ == "__main__":
    main()

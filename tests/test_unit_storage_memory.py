"""Unit tests for MemoryStorage: suffix overwrite, attachment checks, snapshots, load round trip."""

from __future__ import annotations

import random

import pytest

from raft_manager.core import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Raft,
    RaftConfig,
    RestoredState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from raft_manager.storage.memory import MemoryStorage

VOTERS = ("n1", "n2", "n3")


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [
        Entry(start + k, term, EntryType.NORMAL, f"k={start + k}".encode())
        for k, term in enumerate(terms)
    ]


def snap(index: int, term: int, data: bytes = b"image") -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(VOTERS)), data)


def state(storage: MemoryStorage) -> tuple[object, ...]:
    return (storage.hard_state, storage.snapshot, storage.offset, list(storage.entries))


def test_fresh_storage_is_empty() -> None:
    storage = MemoryStorage()
    assert storage.load() == RestoredState(HardState(), None, [])
    assert storage.last_index == 0


def test_save_appends_and_records_the_hard_state() -> None:
    storage = MemoryStorage()
    storage.save(HardState(1, "n1", 0), ents(1, 1), None)
    storage.save(None, ents(1, start=3), None)
    assert storage.entries == ents(1, 1, 1)
    assert storage.hard_state == HardState(1, "n1", 0)  # None keeps the previous hard state
    storage.save(HardState(2, None, 2), [], None)
    assert storage.hard_state == HardState(2, None, 2)
    assert storage.entries == ents(1, 1, 1)
    assert storage.last_index == 3


def test_save_overwrites_the_suffix_from_the_first_new_index() -> None:
    storage = MemoryStorage()
    storage.save(None, ents(1, 1, 1, 1), None)
    storage.save(None, ents(2, start=3), None)
    assert storage.entries == [*ents(1, 1), *ents(2, start=3)]
    assert storage.last_index == 3  # entry 4 of term 1 is gone too
    storage.save(None, ents(3, 3, 3, start=2), None)
    assert [(e.index, e.term) for e in storage.entries] == [(1, 1), (2, 3), (3, 3), (4, 3)]


@pytest.mark.parametrize("first", [0, 5, 9])
def test_save_refuses_entries_that_do_not_attach(first: int) -> None:
    storage = MemoryStorage()
    storage.save(HardState(1, "n1", 1), ents(1, 1, 1), None)
    before = state(storage)
    with pytest.raises(ValueError, match="do not attach"):
        storage.save(HardState(9, "n9", 3), ents(1, start=first), None)
    assert state(storage) == before  # nothing of the refused write was kept


def test_save_refuses_entries_covered_by_the_snapshot() -> None:
    storage = MemoryStorage()
    storage.install_snapshot(snap(5, 2))
    before = state(storage)
    for first in (3, 5, 7):
        with pytest.raises(ValueError):
            storage.save(None, ents(2, start=first), None)
    assert state(storage) == before
    storage.save(None, ents(2, start=6), None)
    assert storage.last_index == 6


def test_install_snapshot_replaces_the_whole_log() -> None:
    storage = MemoryStorage()
    storage.save(HardState(2, "n1", 3), ents(1, 1, 2, 2), None)
    snapshot = snap(10, 3)
    storage.install_snapshot(snapshot)
    assert storage.snapshot is snapshot
    assert storage.offset == 10
    assert storage.entries == []
    assert storage.last_index == 10
    assert storage.hard_state == HardState(2, "n1", 3)


def test_save_with_snapshot_then_entries_attaches_them_after_it() -> None:
    storage = MemoryStorage()
    storage.save(None, ents(1, 1), None)
    snapshot = snap(7, 2)
    storage.save(HardState(3, None, 7), ents(3, 3, start=8), snapshot)
    assert storage.snapshot is snapshot
    assert storage.offset == 7
    assert [e.index for e in storage.entries] == [8, 9]
    assert storage.hard_state == HardState(3, None, 7)


def test_compact_drops_covered_entries_and_keeps_the_rest() -> None:
    storage = MemoryStorage()
    storage.save(HardState(2, "n1", 4), ents(1, 1, 2, 2, 2), None)
    snapshot = snap(3, 2)
    storage.compact(snapshot)
    assert storage.snapshot is snapshot
    assert storage.offset == 3
    assert [e.index for e in storage.entries] == [4, 5]
    assert storage.last_index == 5
    storage.save(None, ents(3, start=5), None)  # overwrites still work after compaction
    assert [(e.index, e.term) for e in storage.entries] == [(4, 2), (5, 3)]


def test_compact_to_an_older_index_is_ignored() -> None:
    storage = MemoryStorage()
    storage.save(None, ents(1, 1, 1, 1), None)
    newer = snap(3, 1)
    storage.compact(newer)
    before = state(storage)
    storage.compact(snap(2, 1))
    storage.compact(snap(3, 1, b"other"))
    assert state(storage) == before
    assert storage.snapshot is newer


def test_load_round_trip_returns_copies() -> None:
    storage = MemoryStorage()
    snapshot = snap(2, 1)
    storage.save(HardState(1, "n2", 2), ents(1, 1, 1), None)
    storage.compact(snapshot)
    restored = storage.load()
    assert restored == RestoredState(HardState(1, "n2", 2), snapshot, ents(1, start=3))
    restored.entries.append(Entry(99, 9))
    assert storage.entries == ents(1, start=3)  # the caller cannot corrupt the disk


def test_load_round_trip_through_a_raft_node() -> None:
    """What a node persisted from its Readies is what it finds after a restart."""
    storage = MemoryStorage()
    config = RaftConfig(id="n1", voters=("n1",))
    raft = Raft(config, random.Random(3))
    for data in (b"a=1", b"b=2"):
        while raft.has_ready():
            ready = raft.ready()
            storage.save(ready.hard_state, ready.entries, ready.snapshot)
            raft.advance(ready)
        raft.propose(data)
    while raft.has_ready():
        ready = raft.ready()
        storage.save(ready.hard_state, ready.entries, ready.snapshot)
        raft.advance(ready)
    snapshot = raft.compact(2, b"state-at-2")
    storage.compact(snapshot)

    restarted = Raft(config, random.Random(4), storage.load())
    assert restarted.snapshot == snapshot
    assert restarted.log.offset == 2
    assert restarted.log.offset_term == 1
    assert restarted.log.committed == raft.log.committed == 3
    assert restarted.log.applied == 2  # entries after the snapshot are applied again
    # A sole voter re-elects itself at once, in the next term, on top of the restored log.
    assert restarted.role is Role.LEADER
    assert (restarted.term, restarted.vote) == (raft.term + 1, "n1")
    assert restarted.log.entries[:-1] == raft.log.entries
    assert restarted.log.entries[-1].type is EntryType.NOOP
    assert restarted.log.stable == raft.log.last_index

"""Unit tests of the storage pieces: record framing, READY and SEGMENT payloads, snapshot files,
segment rotation and deletion, snapshot retention, and FileStorage's simple cases."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import Lockstep, entry, ents, open_load, segments, snap, snapshot_files

from raft_manager.core import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from raft_manager.storage import CorruptionError, FileStorage, StorageError
from raft_manager.storage.records import (
    FLAG_PLUS_ONE,
    HEADER,
    HEADER_SIZE,
    Marker,
    RecordError,
    RecordType,
    decode_ready,
    decode_segment,
    encode_ready,
    encode_segment,
    frame,
    header_ok,
)
from raft_manager.storage.snapshots import MAGIC, decode_snapshot, encode_snapshot, snapshot_name

# -- helpers ---------------------------------------------------------------------------------


def ready_bytes(hard_state: HardState | None, marker: Marker | None, entries: list[Entry]) -> bytes:
    """encode_ready's payload as one bytes object (it may hand back a list of buffers)."""
    encoded: bytes | list[bytes] = encode_ready(hard_state, marker, entries)
    return encoded if isinstance(encoded, bytes) else b"".join(encoded)


def decode(payload: bytes, skip_through: int = 0) -> tuple[object, ...]:
    record = decode_ready(memoryview(payload), skip_through)
    return (record.hard_state, record.marker, record.entries, record.first_index, record.terms)


# Whatever follows a record's payload (the same bytes for every record).
TRAILER = frame(RecordType.READY, b"")[HEADER_SIZE:]


def records_in(path: Path) -> list[tuple[int, RecordType, bytes]]:
    """(offset, type, payload) of every record in a segment file, checking every checksum."""
    data = path.read_bytes()
    found = []
    offset = 0
    while offset < len(data):
        header = data[offset : offset + HEADER_SIZE]
        assert header_ok(header)
        length, record_type, payload_crc, _ = HEADER.unpack(header)
        start = offset + HEADER_SIZE
        payload = data[start : start + length]
        assert crc32c(payload) == payload_crc
        assert data[start + length : start + length + len(TRAILER)] == TRAILER
        found.append((offset, RecordType(record_type), payload))
        offset = start + length + len(TRAILER)
    assert offset == len(data)
    return found


def file_sizes(directory: Path) -> dict[Path, int]:
    return {path: path.stat().st_size for path in directory.rglob("*") if path.is_file()}


# -- record framing --------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"x", b"hello world", bytes(range(256)) * 40])
@pytest.mark.parametrize("record_type", list(RecordType))
def test_frame_puts_a_self_checking_header_before_the_payload(
    payload: bytes, record_type: RecordType
) -> None:
    framed = frame(record_type, payload)
    assert len(framed) == HEADER_SIZE + len(payload) + len(TRAILER) and HEADER_SIZE == 13
    length, found_type, payload_crc, header_crc = HEADER.unpack(framed[:HEADER_SIZE])
    assert (length, found_type, payload_crc) == (len(payload), record_type, crc32c(payload))
    assert header_crc == crc32c(framed[:9])
    assert header_ok(framed[:HEADER_SIZE])
    assert framed[HEADER_SIZE : HEADER_SIZE + len(payload)] == payload
    assert framed.endswith(TRAILER)
    # A whole record never ends in a zero byte, so it cannot pass for a zero-filled torn tail.
    assert framed[-1] != 0


def test_header_ok_catches_every_single_bit_flip_in_the_header() -> None:
    header = bytearray(frame(RecordType.READY, b"payload")[:HEADER_SIZE])
    for bit in range(8 * HEADER_SIZE):
        damaged = bytearray(header)
        damaged[bit // 8] ^= 1 << (bit % 8)
        assert not header_ok(bytes(damaged)), bit


# -- READY payloads --------------------------------------------------------------------------

HARD_STATES = [None, HardState(), HardState(3, "n2", 7), HardState(2**63, "nœud-é", 2**64 - 1)]
MARKERS = [None, Marker(5, 2, install=False), Marker(9, 3, install=True)]
ENTRY_LISTS = [
    [],
    ents(10, 1, 4),
    ents(10, 5, 4, size=0),
    [*ents(1, 2, 1, size=3), *ents(3, 3, 2, size=100), entry(6, 5, 0)],
    [Entry(7, 1, EntryType.CONF_CHANGE, b"\x00" * 9), Entry(8, 1, EntryType.NOOP, b"")],
]


@pytest.mark.parametrize("entries", ENTRY_LISTS, ids=lambda e: f"{len(e)}-entries")
@pytest.mark.parametrize("marker", MARKERS)
@pytest.mark.parametrize("hard_state", HARD_STATES)
def test_ready_payloads_round_trip(
    hard_state: HardState | None, marker: Marker | None, entries: list[Entry]
) -> None:
    payload = ready_bytes(hard_state, marker, entries)
    first = entries[0].index if entries else 0
    terms = tuple(e.term for e in entries)
    assert decode(payload) == (hard_state, marker, entries, first, terms)
    assert decode_ready(memoryview(payload)).count == len(entries)


def test_an_empty_vote_reads_back_as_no_vote() -> None:
    payload = ready_bytes(HardState(1, None, 0), None, [])
    assert decode_ready(memoryview(payload)).hard_state == HardState(1, None, 0)


@pytest.mark.parametrize("skip_through", [0, 9, 10, 12, 14, 15, 100])
def test_skip_through_leaves_out_covered_entries_but_counts_them(skip_through: int) -> None:
    entries = [*ents(10, 3, 1, size=20), *ents(13, 3, 2, size=7)]  # 10..15
    record = decode_ready(
        memoryview(ready_bytes(HardState(2, "n1", 12), None, entries)), skip_through
    )
    assert record.entries == [e for e in entries if e.index > skip_through]
    assert record.first_index == 10
    assert record.terms == (1, 1, 1, 2, 2, 2)
    assert record.count == 6
    assert record.hard_state == HardState(2, "n1", 12)


@st.composite
def ready_contents(draw: st.DrawFn) -> tuple[HardState | None, Marker | None, list[Entry], int]:
    hard_state = draw(
        st.none()
        | st.builds(
            HardState,
            st.integers(0, 2**64 - 1),
            st.none() | st.text(min_size=1, max_size=20),
            st.integers(0, 2**64 - 1),
        )
    )
    marker = draw(
        st.none()
        | st.builds(Marker, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.booleans())
    )
    first = draw(st.integers(1, 2**40))
    term = draw(st.integers(0, 2**40))
    entries = []
    for k in range(draw(st.integers(0, 20))):
        term += draw(st.sampled_from([0, 0, 0, 1, 1000]))  # terms never decrease along a log
        kind = draw(st.sampled_from(list(EntryType)))
        entries.append(Entry(first + k, term, kind, draw(st.binary(max_size=64))))
    skip_through = draw(st.integers(0, first + 25))
    return hard_state, marker, entries, skip_through


@settings(max_examples=300, deadline=None)
@given(ready_contents())
def test_ready_payloads_round_trip_for_any_contents(
    contents: tuple[HardState | None, Marker | None, list[Entry], int],
) -> None:
    hard_state, marker, entries, skip_through = contents
    payload = ready_bytes(hard_state, marker, entries)
    record = decode_ready(memoryview(payload), skip_through)
    assert record.hard_state == hard_state
    assert record.marker == marker
    assert record.entries == [e for e in entries if e.index > skip_through]
    assert record.terms == tuple(e.term for e in entries)
    assert record.first_index == (entries[0].index if entries else 0)


@pytest.mark.parametrize("entries", ENTRY_LISTS, ids=lambda e: f"{len(e)}-entries")
def test_a_cut_short_or_padded_ready_payload_does_not_decode(entries: list[Entry]) -> None:
    payload = ready_bytes(HardState(4, "n3", 2), Marker(3, 1, install=False), entries)
    for length in range(len(payload)):
        with pytest.raises(RecordError):
            decode_ready(memoryview(payload[:length]))
    with pytest.raises(RecordError):
        decode_ready(memoryview(payload + b"\x00"))


def test_a_ready_payload_with_an_unknown_entry_type_does_not_decode() -> None:
    payload = bytearray(ready_bytes(None, None, [Entry(1, 1, EntryType.NOOP, b"abc")]))
    type_at = 1 + 8 + 4 + 8  # flags, first index, count, the term
    assert payload[type_at] == EntryType.NOOP + 1  # stored plus one
    for wrong in (200, 0):
        payload[type_at] = wrong
        with pytest.raises(RecordError):
            decode_ready(memoryview(bytes(payload)))


def test_no_run_of_types_or_lengths_is_zeros_and_older_records_still_read() -> None:
    """A valid record holds no all-zero 512-byte sector of the format's making (the scan takes
    one for a page a crash never wrote): types and lengths are stored plus one (flag 16). A
    record written before, without flag 16, reads as it always did."""
    normal = [Entry(k, 1, EntryType.NORMAL, b"{}") for k in range(1, 3001)]
    empty = [Entry(k, 1, EntryType.CHECKPOINT, b"") for k in range(1, 3001)]
    for entries in (normal, empty):
        payload = ready_bytes(HardState(1, "n1", 0), None, entries)
        assert payload[0] & FLAG_PLUS_ONE and bytes(512) not in payload
        assert decode_ready(memoryview(payload)).entries == entries
    entries = [
        Entry(7, 2, EntryType.NOOP, b""),
        Entry(8, 2, EntryType.NORMAL, b"{}"),
        Entry(9, 2, EntryType.NORMAL, b"{}"),
    ]
    older = bytearray(ready_bytes(None, None, entries))
    older[0] &= ~FLAG_PLUS_ONE
    types_at = 1 + 8 + 4 + 8  # flags, first index, count, the term
    older[types_at : types_at + 3] = bytes([EntryType.NOOP, 0, 0])  # as once written
    older[types_at + 3 : types_at + 15] = struct.pack("<3I", 0, 2, 2)
    assert decode_ready(memoryview(bytes(older))).entries == entries


def test_a_ready_payload_with_a_vote_that_is_not_utf8_does_not_decode() -> None:
    payload = bytearray(ready_bytes(HardState(1, "ab", 0), None, []))
    vote_at = 1 + 8 + 8 + 2
    assert payload[vote_at : vote_at + 2] == b"ab"
    payload[vote_at] = 0xFF
    with pytest.raises(RecordError):
        decode_ready(memoryview(bytes(payload)))


# -- SEGMENT payloads ------------------------------------------------------------------------


@pytest.mark.parametrize("hard_state", [HardState(), HardState(7, "n1", 99)])
@pytest.mark.parametrize("sequence", [1, 2, 2**63])
def test_segment_payloads_round_trip(sequence: int, hard_state: HardState) -> None:
    payload = encode_segment(sequence, hard_state)
    assert decode_segment(memoryview(payload)) == (sequence, hard_state)
    with pytest.raises(RecordError):
        decode_segment(memoryview(payload + b"x"))
    for length in range(len(payload)):
        with pytest.raises(RecordError):
            decode_segment(memoryview(payload[:length]))


# -- snapshot files --------------------------------------------------------------------------

SNAPSHOTS = [
    snap(1, 1, 0),
    snap(10, 3, 1000),
    Snapshot(SnapshotMeta(2**40, 7, ConfState(("b", "a"), ("z",))), b"\x00\xff" * 5000),
    Snapshot(SnapshotMeta(5, 1, ConfState(())), b"x"),
]


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda s: f"{s.meta.index}-{len(s.data)}")
def test_snapshot_files_round_trip(tmp_path: Path, snapshot: Snapshot) -> None:
    blob = encode_snapshot(snapshot)
    assert blob.startswith(MAGIC)
    assert decode_snapshot(tmp_path / "x.snap", blob) == snapshot


def test_snapshot_names_sort_by_index() -> None:
    indexes = [1, 9, 10, 99, 100, 2**40, 2**63]
    names = [snapshot_name(index, 1000 - k) for k, index in enumerate(indexes)]
    assert sorted(names) == names
    assert snapshot_name(12, 3) == "00000000000000000012-00000000000000000003.snap"


def test_every_bit_flip_in_a_snapshot_file_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000010-00000000000000000003.snap"
    blob = encode_snapshot(snap(10, 3, 40))
    for bit in range(8 * len(blob)):
        damaged = bytearray(blob)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptionError) as caught:
            decode_snapshot(path, bytes(damaged))
        assert str(path) in str(caught.value) and "offset" in str(caught.value)


def test_a_cut_short_or_extended_snapshot_file_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.snap"
    blob = encode_snapshot(snap(10, 3, 40))
    for length in range(len(blob)):
        with pytest.raises(CorruptionError):
            decode_snapshot(path, blob[:length])
    for extra in (b"\x00", b"junk"):
        with pytest.raises(CorruptionError):
            decode_snapshot(path, blob + extra)


def checksummed(body: bytes) -> bytes:
    return body + struct.pack("<I", crc32c(body))


def snapshot_body(meta: bytes, data: bytes, data_length: int | None = None) -> bytes:
    length = len(data) if data_length is None else data_length
    return MAGIC + struct.pack("<I", len(meta)) + meta + struct.pack("<Q", length) + data


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (checksummed(snapshot_body(b"{not json", b"data")), "undecodable"),
        (checksummed(snapshot_body(json.dumps({"index": 1}).encode(), b"")), "undecodable"),
        (
            checksummed(
                snapshot_body(
                    json.dumps({"index": 1, "term": 1, "voters": [], "learners": []}).encode(),
                    b"data",
                    data_length=3,
                )
            ),
            "length",
        ),
        (checksummed(b"RMSNAP0\n" + bytes(20)), "magic"),
        (b"RMSNAP1\n", "magic"),
    ],
    ids=["bad-json", "missing-keys", "data-length", "bad-magic", "too-short"],
)
def test_a_snapshot_file_that_checksums_but_does_not_decode_is_corruption(
    tmp_path: Path, blob: bytes, reason: str
) -> None:
    with pytest.raises(CorruptionError, match=reason):
        decode_snapshot(tmp_path / "s.snap", blob)


def test_snapshot_file_layout_is_as_documented() -> None:
    snapshot = snap(10, 3, 40)
    blob = encode_snapshot(snapshot)
    (meta_length,) = struct.unpack_from("<I", blob, len(MAGIC))
    meta = json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + meta_length])
    assert meta == {
        "index": 10,
        "term": 3,
        "voters": ["n1", "n2", "n3"],
        "learners": ["l1"],
        "contexts": {},
    }
    data_at = len(MAGIC) + 4 + meta_length + 8
    (data_length,) = struct.unpack_from("<Q", blob, data_at - 8)
    assert blob[data_at : data_at + data_length] == snapshot.data
    assert blob[-4:] == struct.pack("<I", crc32c(blob[:-4]))


# -- segments --------------------------------------------------------------------------------


@pytest.mark.parametrize("segment_bytes", [4096, 10_000])
def test_a_segment_rotates_once_it_reaches_segment_bytes(
    tmp_path: Path, segment_bytes: int
) -> None:
    pair = Lockstep(tmp_path, segment_bytes=segment_bytes)
    rotations = 0
    for k in range(60):
        current = segments(tmp_path)[-1]
        pair.save(HardState(1, "n1", k), ents(k * 3 + 1, 3, 1, size=61 * (k % 7)), None)
        full = current.stat().st_size >= segment_bytes
        newest = segments(tmp_path)[-1]
        assert (newest != current) == full, (k, current.stat().st_size)
        if full:
            rotations += 1
            assert int(newest.stem, 16) == int(current.stem, 16) + 1
            # A new segment holds only its SEGMENT record, carrying the current hard state.
            ((_, record_type, payload),) = records_in(newest)
            assert record_type is RecordType.SEGMENT
            assert decode_segment(memoryview(payload)) == (
                int(newest.stem, 16),
                HardState(1, "n1", k),
            )
    assert rotations >= 3
    for older in segments(tmp_path)[:-1]:
        assert older.stat().st_size >= segment_bytes
    assert pair.reopen() == pair.expected()
    pair.close()


def test_segment_files_hold_one_ready_record_per_save(tmp_path: Path) -> None:
    pair = Lockstep(tmp_path)
    pair.save(HardState(1, "n1", 0), ents(1, 3, 1), None)
    pair.save(None, ents(4, 2, 1), None)
    pair.save(HardState(1, "n1", 5), [], None)
    pair.compact(snap(2, 1))
    pair.save(None, [], snap(10, 2))
    pair.close()
    ((path),) = segments(tmp_path)
    records = records_in(path)
    assert [record_type for _, record_type, _ in records] == [RecordType.SEGMENT] + [
        RecordType.READY
    ] * 5
    decoded = [decode_ready(memoryview(payload)) for _, _, payload in records[1:]]
    assert [(r.hard_state, r.marker, r.entries) for r in decoded] == [
        (HardState(1, "n1", 0), None, ents(1, 3, 1)),
        (None, None, ents(4, 2, 1)),
        (HardState(1, "n1", 5), None, []),
        (None, Marker(2, 1, install=False), []),
        (None, Marker(10, 2, install=True), []),
    ]


def written_segments(directory: Path, pair: Lockstep, batches: int) -> dict[str, int]:
    """Append `batches` batches; returns each segment's highest entry index."""
    highest: dict[str, int] = {}
    for _ in range(batches):
        current = segments(directory)[-1]
        first = pair.memory.last_index + 1
        pair.save(HardState(1, "n1", first), ents(first, 4, 1, size=300), None)
        highest[current.name] = first + 3
    return highest


@pytest.mark.parametrize("reopen", [False, True])
def test_compact_deletes_the_oldest_segments_it_covers_and_never_the_current(
    tmp_path: Path, reopen: bool
) -> None:
    pair = Lockstep(tmp_path, segment_bytes=4096)
    highest = written_segments(tmp_path, pair, 30)
    names = [path.name for path in segments(tmp_path)]
    assert len(names) >= 6
    if reopen:  # what was in each segment is recomputed from the files
        pair.reopen()
    for target in (highest[names[0]] - 1, highest[names[0]], highest[names[2]] + 1):
        pair.compact(snap(target, 1))
        expected = [name for name in names if highest.get(name, 0) > target or name == names[-1]]
        remaining = [path.name for path in segments(tmp_path)]
        assert remaining == expected, target
        assert remaining == names[len(names) - len(remaining) :]  # a prefix was deleted
        assert pair.reopen() == pair.expected()
    # Compacting everything keeps the current segment (even if it holds no entries).
    pair.save(None, ents(pair.memory.last_index + 1, 30, 1, size=200), None)
    pair.compact(snap(pair.memory.last_index, 1))
    assert [path.name for path in segments(tmp_path)] == [segments(tmp_path)[-1].name]
    assert pair.reopen() == pair.expected()
    pair.close()


def test_compact_keeps_a_segment_whose_entries_go_beyond_the_snapshot(tmp_path: Path) -> None:
    """A segment is deleted only if every entry in it is covered, even one rewritten later."""
    pair = Lockstep(tmp_path, segment_bytes=4096)
    pair.save(None, ents(1, 12, 1, size=400), None)  # fills segment 1 with 1..12
    assert len(segments(tmp_path)) == 2
    pair.save(HardState(2, "n2", 5), ents(6, 2, 2), None)  # the log is now 1..7
    pair.compact(snap(7, 2))
    assert segments(tmp_path)[0].name == f"{1:016x}.wal"
    assert pair.reopen() == pair.expected()
    pair.close()


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_only_the_newest_snapshot_files_are_kept(tmp_path: Path, keep: int) -> None:
    pair = Lockstep(tmp_path, keep_snapshots=keep)
    pair.save(HardState(1, "n1", 0), ents(1, 50, 1), None)
    written = []
    for index in (5, 10, 20):
        pair.compact(snap(index, 1))
        written.append(snapshot_name(index, 1))
        assert [path.name for path in snapshot_files(tmp_path)] == written[-keep:]
    pair.save(HardState(2, None, 60), [], snap(60, 2))  # an installed snapshot counts too
    written.append(snapshot_name(60, 2))
    assert [path.name for path in snapshot_files(tmp_path)] == written[-keep:]
    assert pair.reopen() == pair.expected()
    pair.close()


def test_the_hard_state_survives_the_deletion_of_the_segment_that_recorded_it(
    tmp_path: Path,
) -> None:
    pair = Lockstep(tmp_path, segment_bytes=4096)
    pair.save(HardState(7, "n3", 0), [], None)  # recorded once, in segment 1
    pair.save(None, ents(1, 40, 7, size=300), None)
    pair.compact(snap(40, 7))
    assert f"{1:016x}.wal" not in [path.name for path in segments(tmp_path)]
    assert pair.reopen().hard_state == HardState(7, "n3", 0)
    assert pair.loaded == pair.expected()
    pair.close()


# -- FileStorage's simple cases ---------------------------------------------------------------


def test_file_storage_on_an_empty_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"  # parents are made
    storage = FileStorage(directory, fsync=True)
    assert storage.load() == (HardState(), None, [])
    storage.close()
    assert [path.name for path in segments(directory)] == [f"{1:016x}.wal"]
    assert (directory / "snap").is_dir()
    assert snapshot_files(directory) == []
    ((_, record_type, payload),) = records_in(segments(directory)[0])
    assert record_type is RecordType.SEGMENT
    assert decode_segment(memoryview(payload)) == (1, HardState())
    assert open_load(directory) == (HardState(), None, [])
    existing = tmp_path / "existing"
    existing.mkdir()
    assert open_load(existing) == (HardState(), None, [])


def test_load_may_be_called_once(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, fsync=False)
    storage.load()
    with pytest.raises(RuntimeError):
        storage.load()
    storage.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_a_save_with_nothing_to_do_writes_nothing(tmp_path: Path, fsync: bool) -> None:
    pair = Lockstep(tmp_path, fsync=fsync)
    pair.save(HardState(1, "n1", 1), ents(1, 3, 1), None)
    pair.compact(snap(2, 1))
    before = file_sizes(tmp_path)
    mtimes = {path: path.stat().st_mtime_ns for path in before}
    for _ in range(3):
        pair.save(None, [], None)
    assert file_sizes(tmp_path) == before
    assert {path: path.stat().st_mtime_ns for path in before} == mtimes
    assert pair.reopen() == pair.expected()
    pair.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [({"segment_bytes": 4095}, "segment_bytes"), ({"keep_snapshots": 0}, "snapshot")],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FileStorage(tmp_path, **options)  # type: ignore[arg-type]


def test_compacting_twice_as_entries_are_applied_after_a_rotation_reopens(tmp_path: Path) -> None:
    """A follower applies entries it already holds and compacts twice, with only commit-index
    updates in between; the segment holding the entries was full, so the markers open the next.

    Regression test for a fixed bug: once the segment holding the entries was deleted, recovery
    (LogReplay._cut) took the first compaction marker's index as the log's end, and the second
    compaction failed to recover ('compaction to (i, t) of entries not held')."""
    pair = Lockstep(tmp_path, segment_bytes=4096)
    last = 0
    while len(segments(tmp_path)) == 1:  # entries until segment 1 rotates
        last += 1
        pair.save(HardState(1, "n1", 0), ents(last, 1, 1, size=250), None)
    pair.save(HardState(1, "n1", last - 5), [], None)
    pair.compact(snap(last - 5, 1))
    pair.save(HardState(1, "n1", last), [], None)
    pair.compact(snap(last, 1))  # deletes segment 1
    assert [path.name for path in segments(tmp_path)] == [f"{2:016x}.wal"]
    assert pair.reopen() == pair.expected()
    pair.close()


@pytest.mark.parametrize("reopen", [False, True])
@pytest.mark.parametrize(
    ("first", "with_snapshot"), [(0, False), (5, False), (9, False), (10, True), (13, True)]
)
def test_save_refuses_entries_that_do_not_attach_like_memory_storage(
    tmp_path: Path, first: int, with_snapshot: bool, reopen: bool
) -> None:
    """Entries leaving a gap, or reaching to or below the snapshot, are refused with ValueError and
    nothing is written (not even the snapshot file), as MemoryStorage does.

    Regression test for a fixed bug: FileStorage.save wrote them, and the next open raised
    CorruptionError (a gap, or an entry below the log's start): one bad Ready left a node that
    could not restart."""
    pair = Lockstep(tmp_path)
    pair.save(HardState(1, "n1", 1), ents(1, 3, 1), None)
    if reopen:  # the log's bounds come from recovery
        pair.reopen()
    before = file_sizes(tmp_path)
    snapshot = snap(10, 2) if with_snapshot else None
    for storage in (pair.memory, pair.file):
        with pytest.raises(ValueError, match="attach"):
            storage.save(HardState(9, "n9", 3), ents(first, 2, 2), snapshot)
    assert file_sizes(tmp_path) == before
    assert pair.reopen() == pair.expected()
    pair.close()


@pytest.mark.parametrize("reopen", [False, True])
def test_compaction_past_the_end_is_refused_and_below_the_snapshot_does_nothing(
    tmp_path: Path, reopen: bool
) -> None:
    pair = Lockstep(tmp_path)
    pair.save(HardState(1, "n1", 8), ents(1, 10, 1), None)
    pair.compact(snap(6, 1))
    if reopen:
        pair.reopen()
    before = file_sizes(tmp_path)
    for storage in (pair.memory, pair.file):
        with pytest.raises(ValueError):
            storage.compact(snap(11, 1))
    assert file_sizes(tmp_path) == before
    for index in (3, 6):  # at or below the snapshot: nothing to do
        pair.compact(snap(index, 1, size=99))
    assert file_sizes(tmp_path) == before
    assert pair.reopen() == pair.expected()
    pair.compact(snap(10, 1))  # up to the very end is fine
    pair.save(None, ents(11, 2, 2), None)
    assert pair.reopen() == pair.expected()
    pair.close()


def test_member_contexts_survive_a_snapshot_file(tmp_path: Path) -> None:
    conf = ConfState(("n1", "n2"), ("n4",), (("n4", '{"address":"127.0.0.1:7104"}'),))
    snapshot = Snapshot(SnapshotMeta(7, 2, conf), b"state")
    restored = decode_snapshot(tmp_path / "x.snap", encode_snapshot(snapshot))
    assert restored == snapshot and restored.meta.conf.context("n4").startswith("{")


def test_a_data_directory_is_opened_by_one_storage_at_a_time(tmp_path: Path) -> None:
    """Two nodes (or processes) writing one WAL would corrupt it: the second open is refused
    while the first holds it, and works once it is closed (or its process died)."""
    first = FileStorage(tmp_path)
    with pytest.raises(StorageError, match="in use"):
        FileStorage(tmp_path)
    first.close()
    FileStorage(tmp_path).close()

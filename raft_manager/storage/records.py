"""The write-ahead log's on-disk record format.

Theory of operation: a segment file is a sequence of records, each

    header (13 bytes, little-endian): u32 payload length | u8 type | u32 CRC32C(payload)
                                      | u32 CRC32C(the preceding 9 header bytes)
    payload
    end byte 0xA5

The crash model is the prefix model: a write cut short by a crash leaves some prefix of its bytes,
possibly followed by zeros up to the length the file had reached. So a torn record runs past the
end of the file, or the file's last non-zero byte lies before the record's end byte (which is
never zero, so a whole record can never end in the zeros of a torn one). The header has its own
checksum so that a damaged length is never mistaken for a torn write. Anything else that fails a
check is corruption.

One `save` of a Ready is one READY record, so a batch is durable whole or not at all. Its payload:

    u8 flags (1: hard state, 2: compaction marker, 4: install marker, 8: one term for all,
              16: types and lengths plus one)
    [hard state]  u64 term | u64 commit | u16 len | vote (utf-8, empty for none)
    [marker]      u64 index | u64 term  (the log was compacted to, or replaced by, this snapshot)
    u64 first index | u32 count | terms | count x u8 type | count x u32 length | data

where terms is one u64 when flag 8 is set (terms never decrease along a log, so a batch whose
first and last entries share a term is all of that term: the common case), else count x u64.
Every record written now has flag 16: each type and each length is stored plus one, so that no
run of them is zeros (a batch of a thousand NORMAL entries once stored a thousand zero bytes:
an all-zero sector, which the scan takes for a page a crash never wrote, wal.py). Terms are at
least 1, so they hold no such run either; entry data is the state machine's (the ledger's JSON
holds no zero byte). Records without flag 16, as older versions wrote them, read as before.

A SEGMENT record opens every segment: u64 sequence number and the hard state at the time, so that
deleting older segments never loses the latest term and vote.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from crc32c import crc32c

from raft_manager.core import Entry, EntryType, HardState

HEADER = struct.Struct("<IBII")
HEADER_SIZE = HEADER.size  # 13
_HEADER_BODY = struct.Struct("<IBI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HARD_STATE = struct.Struct("<QQH")
_MARKER = struct.Struct("<QQ")
_ENTRIES = struct.Struct("<QI")
_ENTRY_TYPES = tuple(EntryType)
_ENTRY_TYPES_PLUS_ONE = (EntryType.NORMAL, *_ENTRY_TYPES)  # by stored byte (0 is refused)
MAX_PAYLOAD = 1 << 31

FLAG_HARD_STATE = 1
FLAG_COMPACT = 2
FLAG_INSTALL = 4
FLAG_ONE_TERM = 8
FLAG_PLUS_ONE = 16
RECORD_END = 0xA5
_END = bytes((RECORD_END,))


class RecordType(IntEnum):
    SEGMENT = 1
    READY = 2


class RecordError(ValueError):
    """A payload that passed its checksum but does not decode: written by a broken writer."""


@dataclass(frozen=True, slots=True)
class Marker:
    """A snapshot the log was cut at: compacted (prefix dropped) or installed (log replaced)."""

    index: int
    term: int
    install: bool


@dataclass(slots=True)
class ReadyRecord:
    hard_state: HardState | None
    marker: Marker | None
    entries: list[Entry]  # those above the decoder's skip_through
    first_index: int  # of all the entries in the record (0 when there are none)
    terms: tuple[int, ...]  # of all the entries in the record

    @property
    def count(self) -> int:
        return len(self.terms)


def frame_parts(record_type: RecordType, parts: list[bytes]) -> list[bytes]:
    """A record as a list of buffers (header first), for one os.writev without copying."""
    length = checksum = 0
    for part in parts:
        length += len(part)
        checksum = crc32c(part, checksum)
    if length >= MAX_PAYLOAD:
        raise ValueError(f"record payload of {length} bytes is too large")
    body = _HEADER_BODY.pack(length, record_type, checksum)
    return [body + _U32.pack(crc32c(body)), *parts, _END]


def frame(record_type: RecordType, payload: bytes) -> bytes:
    return b"".join(frame_parts(record_type, [payload]))


def header_ok(header: bytes | memoryview) -> bool:
    stored: int = HEADER.unpack_from(header)[3]
    return crc32c(header[:9]) == stored


def _encode_hard_state(hard_state: HardState) -> bytes:
    vote = (hard_state.vote or "").encode()
    return _HARD_STATE.pack(hard_state.term, hard_state.commit, len(vote)) + vote


def _decode_hard_state(payload: memoryview, offset: int) -> tuple[HardState, int]:
    term, commit, vote_length = _HARD_STATE.unpack_from(payload, offset)
    offset += _HARD_STATE.size
    vote = bytes(payload[offset : offset + vote_length]).decode()
    return HardState(term, vote or None, commit), offset + vote_length


def encode_ready(
    hard_state: HardState | None, marker: Marker | None, entries: Sequence[Entry]
) -> list[bytes]:
    """A READY payload, as a list of buffers to be written back to back."""
    flags = 0
    parts: list[bytes] = [b""]  # the flags byte goes here
    if hard_state is not None:
        flags |= FLAG_HARD_STATE
        parts.append(_encode_hard_state(hard_state))
    if marker is not None:
        flags |= FLAG_INSTALL if marker.install else FLAG_COMPACT
        parts.append(_MARKER.pack(marker.index, marker.term))
    count = len(entries)
    first = entries[0].index if entries else 0
    parts.append(_ENTRIES.pack(first, count))
    if count:
        # One comprehension per field is the cheapest way to read a field off every entry.
        if entries[0].term == entries[-1].term:
            flags |= FLAG_ONE_TERM
            parts.append(_U64.pack(entries[0].term))
        else:
            parts.append(struct.pack(f"<{count}Q", *[entry.term for entry in entries]))
        types = [entry.type for entry in entries]
        datas = [entry.data for entry in entries]
        # NORMAL is 0: stored as 1, as every type and length is stored plus one.
        parts.append(bytes([int(kind) + 1 for kind in types]) if any(types) else b"\1" * count)
        parts.append(struct.pack(f"<{count}I", *[len(data) + 1 for data in datas]))
        parts.append(b"".join(datas))
    parts[0] = bytes((flags | FLAG_PLUS_ONE,))
    return parts


def decode_ready(payload: memoryview, skip_through: int = 0) -> ReadyRecord:
    """Decode a READY payload; entries at or below `skip_through` are counted but not built."""
    try:
        flags = payload[0]
        offset = 1
        hard_state = marker = None
        if flags & FLAG_HARD_STATE:
            hard_state, offset = _decode_hard_state(payload, offset)
        if flags & (FLAG_COMPACT | FLAG_INSTALL):
            index, term = _MARKER.unpack_from(payload, offset)
            offset += _MARKER.size
            marker = Marker(index, term, bool(flags & FLAG_INSTALL))
        first, count = _ENTRIES.unpack_from(payload, offset)
        offset += _ENTRIES.size
        entries: list[Entry] = []
        terms: tuple[int, ...] = ()
        if count:
            if flags & FLAG_ONE_TERM:
                terms = (_U64.unpack_from(payload, offset)[0],) * count
                offset += 8
            else:
                terms = struct.unpack_from(f"<{count}Q", payload, offset)
                offset += 8 * count
            types = bytes(payload[offset : offset + count])
            offset += count
            lengths = struct.unpack_from(f"<{count}I", payload, offset)
            offset += 4 * count
            entry_types = _ENTRY_TYPES
            if flags & FLAG_PLUS_ONE:
                if 0 in types or 0 in lengths:
                    raise RecordError("an entry type or length of zero where one is added")
                entry_types = _ENTRY_TYPES_PLUS_ONE
                lengths = tuple(length - 1 for length in lengths)
            if offset + sum(lengths) != len(payload):
                raise RecordError("entry lengths do not add up to the payload")
            index = first
            for k in range(count):
                length = lengths[k]
                if index > skip_through:
                    data = bytes(payload[offset : offset + length])
                    entries.append(Entry(index, terms[k], entry_types[types[k]], data))
                offset += length
                index += 1
        elif offset != len(payload):
            raise RecordError("trailing bytes after an empty READY record")
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise RecordError(f"undecodable READY record: {error}") from error
    return ReadyRecord(hard_state, marker, entries, first, terms)


def encode_segment(sequence: int, hard_state: HardState) -> bytes:
    return _U64.pack(sequence) + _encode_hard_state(hard_state)


def decode_segment(payload: memoryview) -> tuple[int, HardState]:
    try:
        (sequence,) = _U64.unpack_from(payload, 0)
        hard_state, end = _decode_hard_state(payload, _U64.size)
    except (struct.error, UnicodeDecodeError) as error:
        raise RecordError(f"undecodable SEGMENT record: {error}") from error
    if end != len(payload):
        raise RecordError("trailing bytes after a SEGMENT record")
    return sequence, hard_state

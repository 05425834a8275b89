"""Malformed and out-of-protocol input fed to Raft nodes in every role.

The contract under test (core/raft.py, core/messages.py): `step` either raises InvalidMessage (a
RaftError) and changes nothing, or accepts the message; it never raises anything else, and the
node keeps working afterwards. Well-formed but stale or unsolicited messages are not errors.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_helpers import memory

from raft_manager.core import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InvalidMessage,
    Message,
    NotLeader,
    ProposalDropped,
    Raft,
    RaftConfig,
    RaftError,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RestoredState,
    Role,
    SnapshotAck,
    SnapshotMeta,
    TimeoutNow,
    VoteResponse,
)
from raft_manager.core.log import RaftLog
from raft_manager.core.messages import MESSAGE_TYPES
from raft_manager.sim.cluster import SimCluster, SimNode

IDS = ("n1", "n2", "n3")
STRANGER = "n9"  # a node id no configuration knows

# == nodes in various roles ======================================================================


def drain(raft: Raft) -> None:
    while raft.has_ready():
        raft.advance(raft.ready())


def _follower(*, compacted: bool) -> Raft:
    """n2 follows n1 in term 2: log (1,1) (2,1) (3,2) (4,2) (5,2), commit 3, applied 3."""
    raft = Raft(RaftConfig(id="n2", voters=IDS), random.Random(2))
    entries = (
        Entry(1, 1, EntryType.NOOP),
        Entry(2, 1, EntryType.NORMAL, b"a=1"),
        Entry(3, 2, EntryType.NOOP),
        Entry(4, 2, EntryType.NORMAL, b"b=2"),
        Entry(5, 2, EntryType.NORMAL, b"c=3"),
    )
    raft.step(
        AppendEntries(
            frm="n1", to="n2", term=2, prev_index=0, prev_term=0, entries=entries, commit=3
        )
    )
    drain(raft)
    if compacted:
        raft.compact(2, b'{"applied": 2, "data": {"a": "1"}}')
    assert (raft.role, raft.term, raft.leader) == (Role.FOLLOWER, 2, "n1")
    assert (raft.log.committed, raft.log.applied, raft.log.stable) == (3, 3, 5)
    return raft


def _candidate(*, pre_vote: bool) -> Raft:
    """n1 with a log of three entries, campaigning (for real, or a pre-vote)."""
    restored = RestoredState(
        HardState(term=2, vote="n1", commit=2),
        None,
        [Entry(1, 1, EntryType.NOOP), Entry(2, 2, EntryType.NOOP), Entry(3, 2, data=b"a=1")],
    )
    raft = Raft(RaftConfig(id="n1", voters=IDS, pre_vote=pre_vote), random.Random(1), restored)
    for _ in range(100):
        raft.tick()
        if raft.role is not Role.FOLLOWER:
            break
    drain(raft)
    assert raft.role is (Role.PRE_CANDIDATE if pre_vote else Role.CANDIDATE)
    return raft


def elect(cluster: SimCluster, bound: int = 300) -> SimNode:
    for _ in range(bound):
        leader = cluster.leader()
        if leader is not None and leader.core().log.committed >= 1:
            return leader
        cluster.tick()
    raise AssertionError("no leader elected")


def _leader() -> Raft:
    """The leader of a 3-node simulated cluster, with five entries replicated everywhere."""
    cluster = SimCluster(3, 11)
    leader = elect(cluster)
    for k in range(4):
        cluster.put(leader.id, f"k{k}", f"v{k}")
    cluster.run(10)
    raft = leader.core()
    assert raft.role is Role.LEADER
    assert raft.log.committed == raft.log.last_index >= 5
    return copy.deepcopy(raft)


def _leader_lagging() -> Raft:
    """A leader that compacted its log while one follower was cut off, then started sending that
    follower its snapshot in small chunks."""
    cluster = SimCluster(3, 5, snapshot_chunk_bytes=8, max_inflight_msgs=2)
    leader = elect(cluster)
    lagging = next(node_id for node_id in IDS if node_id != leader.id)
    cluster.isolate(lagging)
    for k in range(6):
        cluster.put(leader.id, f"k{k}", f"v{k}")
        cluster.tick()
    cluster.run(5)
    assert cluster.compact(leader.id)
    cluster.heal()
    cluster.run(3)
    raft = leader.core()
    assert raft.role is Role.LEADER
    assert raft.log.offset > 0
    return copy.deepcopy(raft)


PROTOTYPES: dict[str, Callable[[], Raft]] = {
    "follower": functools.cache(functools.partial(_follower, compacted=False)),
    "compacted follower": functools.cache(functools.partial(_follower, compacted=True)),
    "candidate": functools.cache(functools.partial(_candidate, pre_vote=False)),
    "pre-candidate": functools.cache(functools.partial(_candidate, pre_vote=True)),
    "leader": functools.cache(_leader),
    "leader with a lagging follower": functools.cache(_leader_lagging),
}
ROLES = sorted(PROTOTYPES)


def node(role: str) -> Raft:
    """A fresh copy of a prototype node: examples never share state."""
    return copy.deepcopy(PROTOTYPES[role]())


# == observing a node =============================================================================


def observe(raft: Raft) -> tuple[Any, ...]:
    """Everything a step that raises must leave untouched."""
    log = raft.log
    progress = {
        peer: (
            pr.state,
            pr.match,
            pr.next,
            pr.probe_sent,
            pr.recent_active,
            len(pr.inflights),
            pr.inflights.bytes,
            pr.snapshot_index,
            pr.snapshot_offset,
        )
        for peer, pr in raft.progress.items()
    }
    return (
        raft.term,
        raft.vote,
        raft.role,
        raft.leader,
        raft.transfer_target,
        raft.conf,
        raft.snapshot,
        list(log.entries),
        log.offset,
        log.offset_term,
        log.committed,
        log.stable,
        log.applied,
        log.pending_snapshot,
        progress,
        len(raft._msgs),  # nothing may be sent in answer to a refused message
    )


def check_log(raft: Raft) -> None:
    """Structural invariants of a node's log that no input may break."""
    log = raft.log
    assert log.offset <= log.applied <= log.committed <= log.last_index
    assert log.stable <= log.last_index
    assert [e.index for e in log.entries] == list(range(log.offset + 1, log.last_index + 1))
    terms = [log.offset_term, *(e.term for e in log.entries)]
    assert terms == sorted(terms), "terms in a log never decrease"
    assert terms[-1] <= raft.term, "no entry from a future term"


def step_checked(raft: Raft, msg: object) -> bool:
    """Step `msg`; returns whether it was accepted. Checks the contract either way."""
    before = observe(raft)
    committed = raft.log.committed
    committed_terms = {i: raft.log.term(i) for i in range(raft.log.offset, committed + 1)}
    try:
        raft.step(msg)
    except InvalidMessage as error:
        assert isinstance(error, RaftError)
        assert observe(raft) == before, f"{msg!r} was refused but changed the node"
        return False
    check_log(raft)
    assert raft.log.committed >= committed, "the commit index never goes back"
    for index, term in committed_terms.items():
        assert raft.log.term(index) in (None, term), f"committed entry {index} was replaced"
    return True


def refused(raft: Raft, msg: object) -> None:
    assert not step_checked(raft, msg), f"{msg!r} should have been refused"


def keeps_working(raft: Raft) -> None:
    """After whatever it was fed, the node still runs: ticks, readies, proposals."""
    for _ in range(3 * raft.config.election_tick):
        raft.tick()
        drain(raft)
        check_log(raft)
    if raft.role is Role.LEADER and raft.transfer_target is None:
        index = raft.propose(b"after=garbage")
        drain(raft)
        assert raft.log.term(index) == raft.term


# == strategies ====================================================================================


@dataclass(slots=True, kw_only=True)
class Rogue(Message):
    """A message type that is no part of the protocol."""

    index: int = 1


@dataclass(slots=True, kw_only=True)
class SneakyAppend(AppendEntries):
    """A subclass of a real message type is still not a registered type."""


BAD_INTS = st.one_of(
    st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
    st.binary(max_size=2),
    st.none(),
    st.just([1]),
)
BAD_BOOLS = st.one_of(st.integers(0, 1), st.none(), st.text(max_size=2), st.floats(0, 1))
NOT_BYTES = st.one_of(
    st.text(max_size=3),
    st.none(),
    st.integers(),
    st.just(bytearray(b"x")),
    st.just(memoryview(b"x")),
)
GOOD_CONF = st.sampled_from([ConfState(IDS), ConfState(("n1",)), ConfState(("n2", "n3"), ("n1",))])


@st.composite
def entry_chain(draw: st.DrawFn, prev_index: int, prev_term: int, term: int) -> tuple[Entry, ...]:
    if term < 1:
        return ()
    count = draw(st.integers(0, 3))
    low = max(prev_term, 1)
    terms = sorted(draw(st.lists(st.integers(low, term), min_size=count, max_size=count)))
    return tuple(
        Entry(
            prev_index + 1 + k,
            entry_term,
            draw(st.sampled_from(EntryType)),
            draw(st.binary(max_size=4)),
        )
        for k, entry_term in enumerate(terms)
    )


@st.composite
def valid_message(
    draw: st.DrawFn,
    me: str,
    terms: st.SearchStrategy[int],
    senders: tuple[str, ...] | None = None,
    kinds: tuple[type[Message], ...] = MESSAGE_TYPES,
    log: RaftLog | None = None,
) -> Message:
    """A well-formed message for node `me`: valid types and fields, small terms and indexes.

    Given the node's `log`, indexes and terms are drawn near it half of the time, so that
    appends match, conflict, reach the committed prefix and acknowledge real indexes."""
    frm = draw(st.sampled_from(senders or [i for i in (*IDS, STRANGER) if i != me]))
    term = draw(terms)
    kind = draw(st.sampled_from(kinds))
    small = st.integers(0, 8)
    known: list[tuple[int, int]] = []
    if log is not None:
        known = [(i, log.term(i) or 0) for i in range(log.offset, log.last_index + 1)]
        known = [(i, t) for i, t in known if t <= term]
        small = st.integers(0, log.last_index + 2)
    base: dict[str, Any] = {"frm": frm, "to": me, "term": term}
    if kind is AppendEntries:
        near_log = draw(st.booleans())
        if known and near_log:
            prev_index, prev_term = draw(st.sampled_from(known))
        else:
            prev_index = draw(small) if term else 0
            prev_term = draw(st.integers(1, term)) if prev_index else 0
        entries = draw(entry_chain(prev_index, prev_term, term))
        return AppendEntries(
            **base, prev_index=prev_index, prev_term=prev_term, entries=entries, commit=draw(small)
        )
    if kind is AppendResponse:
        reject = draw(st.booleans())
        index = draw(small)
        return AppendResponse(
            **base,
            index=max(index, 1) if reject else index,
            reject=reject,
            hint_index=draw(small),
            hint_term=draw(st.integers(0, term)),
        )
    if kind is Heartbeat:
        return Heartbeat(**base, commit=draw(small), round=draw(small))
    if kind is HeartbeatResponse:
        return HeartbeatResponse(**base, round=draw(small))
    if kind is RequestVote:
        return RequestVote(
            **base,
            last_index=draw(small),
            last_term=draw(st.integers(0, term)),
            pre_vote=draw(st.booleans()),
            transfer=draw(st.booleans()),
        )
    if kind is VoteResponse:
        return VoteResponse(**base, granted=draw(st.booleans()), pre_vote=draw(st.booleans()))
    if kind is InstallSnapshot:
        base["term"] = max(term, 1)
        snapshot_points = [(i, t) for i, t in known if i > 0]
        near_log = draw(st.booleans())
        if snapshot_points and near_log:
            index, meta_term = draw(st.sampled_from(snapshot_points))
        else:
            index, meta_term = draw(st.integers(1, 9)), draw(st.integers(1, base["term"]))
        return InstallSnapshot(
            **base,
            meta=SnapshotMeta(index, meta_term, draw(GOOD_CONF)),
            offset=draw(st.integers(0, 6)),
            data=draw(st.binary(max_size=6)),
            done=draw(st.booleans()),
        )
    if kind is SnapshotAck:
        return SnapshotAck(**base, snapshot_index=draw(small), received=draw(small))
    if kind is TimeoutNow:
        return TimeoutNow(**base)
    if kind is ReadIndexRequest:
        return ReadIndexRequest(**base, context=draw(st.binary(max_size=4)))
    assert kind is ReadIndexResponse
    return ReadIndexResponse(
        **base, context=draw(st.binary(max_size=4)), index=draw(st.integers(-1, 8))
    )


INT_FIELDS: dict[type[Message], tuple[str, ...]] = {
    AppendEntries: ("prev_index", "prev_term", "commit"),
    AppendResponse: ("index", "hint_index", "hint_term"),
    Heartbeat: ("commit", "round"),
    HeartbeatResponse: ("round",),
    RequestVote: ("last_index", "last_term"),
    InstallSnapshot: ("offset",),
    SnapshotAck: ("snapshot_index", "received"),
}
BOOL_FIELDS: dict[type[Message], tuple[str, ...]] = {
    AppendResponse: ("reject",),
    RequestVote: ("pre_vote", "transfer"),
    VoteResponse: ("granted", "pre_vote"),
    InstallSnapshot: ("done",),
}


def replace(msg: Message, **changes: Any) -> Message:
    return dataclasses.replace(msg, **changes)


def alter(entry: Entry, **changes: Any) -> Entry:
    """A copy of `entry` with some fields changed (no validation: Entry does none)."""
    fields = {"index": entry.index, "term": entry.term, "type": entry.type, "data": entry.data}
    return Entry(**{**fields, **changes})


@st.composite
def not_a_message(draw: st.DrawFn, me: str) -> object:
    return draw(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.binary(max_size=5),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
            st.just(Entry(1, 1)),
            st.just(HardState(1, "n1", 0)),
            st.just(SnapshotMeta(1, 1, ConfState(IDS))),
            st.just(AppendEntries),  # the class, not an instance
            st.builds(Rogue, frm=st.just("n1"), to=st.just(me), term=st.integers(0, 5)),
            st.builds(Message, frm=st.just("n3"), to=st.just(me), term=st.integers(0, 5)),
            st.builds(
                SneakyAppend,
                frm=st.just("n1"),
                to=st.just(me),
                term=st.integers(2, 5),
                prev_index=st.just(0),
                prev_term=st.just(0),
                entries=st.just(()),
                commit=st.just(0),
            ),
        )
    )


@st.composite
def bad_envelope(draw: st.DrawFn, me: str, terms: st.SearchStrategy[int]) -> Message:
    """A valid message with a broken sender, recipient or term."""
    msg = draw(valid_message(me, terms))
    others = [i for i in IDS if i != me]
    field = draw(st.sampled_from(["frm", "to", "term"]))
    if field == "frm":
        bad = draw(st.one_of(st.just(""), st.just(me), st.none(), st.integers(), st.binary()))
    elif field == "to":
        bad = draw(st.one_of(st.sampled_from([*others, STRANGER, ""]), st.none(), st.integers()))
    else:
        bad = draw(BAD_INTS)
    return replace(msg, **{field: bad})


@st.composite
def bad_field(draw: st.DrawFn, me: str, terms: st.SearchStrategy[int]) -> Message:
    """A valid message with one int or bool field of the wrong type or sign."""
    kinds = tuple(sorted({*INT_FIELDS, *BOOL_FIELDS}, key=lambda k: k.__name__))
    msg = draw(valid_message(me, terms, kinds=kinds))
    kind = type(msg)
    fields = [(name, BAD_INTS) for name in INT_FIELDS.get(kind, ())]
    fields += [(name, BAD_BOOLS) for name in BOOL_FIELDS.get(kind, ())]
    name, values = draw(st.sampled_from(fields))
    return replace(msg, **{name: draw(values)})


@st.composite
def bad_append(draw: st.DrawFn, me: str, term: int) -> Message:
    """An AppendEntries whose prev or entries cannot exist."""
    term = max(term, 2)
    prev_index = draw(st.integers(1, 6))
    prev_term = draw(st.integers(1, term - 1))
    good = tuple(Entry(prev_index + 1 + k, term) for k in range(3))
    frm = draw(st.sampled_from([i for i in IDS if i != me]))
    msg = AppendEntries(
        frm=frm,
        to=me,
        term=term,
        prev_index=prev_index,
        prev_term=prev_term,
        entries=good,
        commit=0,
    )
    case = draw(st.integers(0, 17))
    gap = draw(st.integers(1, 3))
    if case == 0:
        return replace(msg, entries=list(good))  # not a tuple
    if case == 1:
        return replace(msg, entries=(good[0], (prev_index + 2, term), good[2]))  # not an Entry
    if case == 2:
        return replace(msg, entries=(good[0], alter(good[1], index=prev_index + 2 + gap)))
    if case == 3:
        first = draw(st.sampled_from([prev_index, prev_index + 1 + gap, 0, -1]))
        return replace(msg, entries=(alter(good[0], index=first),))
    if case == 4:  # decreasing terms
        return replace(msg, entries=(good[0], alter(good[1], term=prev_term - 1 or 0)))
    if case == 5:  # an entry from a future term
        return replace(msg, entries=(alter(good[0], term=term + gap),))
    if case == 6:  # an entry older than prev_term
        return replace(msg, prev_term=term, entries=(alter(good[0], term=term - 1),))
    if case == 7:
        return replace(msg, entries=(alter(good[0], term=0),), prev_index=0, prev_term=0)
    if case == 8:
        return replace(msg, entries=(alter(good[0], data=draw(NOT_BYTES)),))
    if case == 9:
        kind = draw(st.sampled_from([0, 1, "NORMAL", None, 2.0]))
        return replace(msg, entries=(alter(good[0], type=kind),))
    if case == 10:
        return replace(msg, entries=(alter(good[0], index=draw(BAD_INTS)),))
    if case == 11:
        return replace(msg, entries=(alter(good[0], term=draw(BAD_INTS)),))
    if case == 12:  # prev_term above the message term
        return replace(msg, prev_term=term + gap, entries=())
    if case == 13:  # prev_index 0 with a term
        return replace(msg, prev_index=0, prev_term=draw(st.integers(1, term)), entries=())
    if case == 14:  # a term with no prev_index
        return replace(msg, prev_index=draw(st.integers(1, 9)), prev_term=0, entries=())
    if case == 15:
        return replace(msg, entries=(*good, None))
    if case == 16:
        return replace(msg, entries=draw(st.one_of(st.none(), st.just(good[0]), st.text())))
    return replace(msg, entries=(good[0], good[0]))  # a repeated index


@st.composite
def bad_snapshot(draw: st.DrawFn, me: str, term: int) -> Message:
    """An InstallSnapshot whose meta or payload cannot exist."""
    term = max(term, 1)
    frm = draw(st.sampled_from([i for i in IDS if i != me]))
    meta = SnapshotMeta(draw(st.integers(1, 9)), draw(st.integers(1, term)), ConfState(IDS))
    msg = InstallSnapshot(frm=frm, to=me, term=term, meta=meta, offset=0, data=b"{}", done=True)
    case = draw(st.integers(0, 6))
    if case == 0:
        bad_meta = draw(
            st.one_of(
                st.none(),
                st.text(max_size=3),
                st.integers(),
                st.just((5, 1, ConfState(IDS))),
                st.just(Entry(5, 1)),
            )
        )
        return replace(msg, meta=bad_meta)
    if case == 1:
        bad_index = draw(st.one_of(BAD_INTS, st.just(0)))
        return replace(msg, meta=dataclasses.replace(meta, index=bad_index))
    if case == 2:
        bad_term = draw(st.one_of(BAD_INTS, st.just(0)))
        return replace(msg, meta=dataclasses.replace(meta, term=bad_term))
    if case == 3:  # a snapshot from a future term
        future = term + draw(st.integers(1, 3))
        return replace(msg, meta=dataclasses.replace(meta, term=future))
    if case == 4:
        return replace(msg, meta=dataclasses.replace(meta, conf=ConfState(())))
    if case == 5:
        return replace(msg, meta=dataclasses.replace(meta, conf=ConfState((), ("n1",))))
    return replace(msg, data=draw(NOT_BYTES))


@st.composite
def bad_misc(draw: st.DrawFn, me: str, term: int) -> Message:
    frm = draw(st.sampled_from([i for i in IDS if i != me]))
    case = draw(st.integers(0, 3))
    context: Any = draw(NOT_BYTES)
    if case == 0:
        return ReadIndexRequest(frm=frm, to=me, term=term, context=context)
    if case == 1:
        return ReadIndexResponse(frm=frm, to=me, term=term, context=context, index=1)
    if case == 2:
        bad_index = draw(st.one_of(st.integers(max_value=-2), BAD_INTS.filter(lambda v: v != -1)))
        return ReadIndexResponse(frm=frm, to=me, term=term, context=b"c", index=bad_index)
    return AppendResponse(frm=frm, to=me, term=term, index=0, reject=True, hint_index=1)


def malformed(me: str, term: int) -> st.SearchStrategy[object]:
    """Inputs that can never be valid, whatever the node's state."""
    terms = st.integers(max(term - 1, 0), term + 1)
    return st.one_of(
        not_a_message(me),
        bad_envelope(me, terms),
        bad_field(me, terms),
        bad_append(me, term),
        bad_snapshot(me, term),
        bad_misc(me, term),
    )


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# == malformed input is refused and changes nothing ==============================================


@FAST
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_malformed_input_is_refused_without_any_change(data: st.DataObject, role: str) -> None:
    raft = node(role)
    for _ in range(data.draw(st.integers(1, 4), label="count")):
        refused(raft, data.draw(malformed(raft.id, raft.term), label="garbage"))
    keeps_working(raft)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "garbage",
    [
        None,
        0,
        "AppendEntries",
        b"\x00",
        {"frm": "n1", "to": "n2", "term": 1},
        Entry(1, 1),
        AppendEntries,
    ],
    ids=repr,
)
def test_objects_that_are_not_messages(role: str, garbage: object) -> None:
    raft = node(role)
    refused(raft, garbage)


@pytest.mark.parametrize("role", ROLES)
def test_unknown_message_types(role: str) -> None:
    raft = node(role)
    other = "n3" if raft.id != "n3" else "n1"
    refused(raft, Rogue(frm=other, to=raft.id, term=raft.term + 1))
    refused(raft, Message(frm=other, to=raft.id, term=raft.term))
    refused(
        raft,
        SneakyAppend(
            frm=other,
            to=raft.id,
            term=raft.term + 1,
            prev_index=0,
            prev_term=0,
            entries=(),
            commit=0,
        ),
    )
    keeps_working(raft)


@pytest.mark.parametrize("role", ROLES)
def test_wrong_recipient_and_messages_to_self(role: str) -> None:
    raft = node(role)
    me = raft.id
    other = "n3" if me != "n3" else "n1"
    hb = Heartbeat(frm=other, to=me, term=raft.term + 1, commit=0, round=1)
    refused(raft, replace(hb, to=STRANGER))
    refused(raft, replace(hb, to=other))
    refused(raft, replace(hb, frm=me))
    refused(raft, replace(hb, frm=""))
    refused(raft, RequestVote(frm=me, to=me, term=raft.term + 5, last_index=99, last_term=99))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("bad", [-1, -100, 1.0, 2.5, float("nan"), True, False, "3", None, b"1"])
def test_non_int_and_negative_terms_and_indexes(role: str, bad: Any) -> None:
    raft = node(role)
    me, term = raft.id, raft.term
    other = "n3" if me != "n3" else "n1"
    refused(raft, Heartbeat(frm=other, to=me, term=bad, commit=0, round=1))
    refused(
        raft,
        AppendEntries(
            frm=other, to=me, term=term, prev_index=bad, prev_term=1, entries=(), commit=0
        ),
    )
    refused(
        raft,
        AppendResponse(frm=other, to=me, term=term, index=bad),
    )
    refused(
        raft,
        RequestVote(frm=other, to=me, term=term + 1, last_index=bad, last_term=9),
    )
    refused(
        raft,
        SnapshotAck(frm=other, to=me, term=term, snapshot_index=1, received=bad),
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("bad", [0, 1, None, "yes"])
def test_non_bool_flags(role: str, bad: Any) -> None:
    raft = node(role)
    me, term = raft.id, raft.term
    other = "n3" if me != "n3" else "n1"
    refused(raft, VoteResponse(frm=other, to=me, term=term, granted=bad))
    refused(
        raft,
        RequestVote(frm=other, to=me, term=term + 1, last_index=9, last_term=9, pre_vote=bad),
    )
    refused(raft, AppendResponse(frm=other, to=me, term=term, index=1, reject=bad))


@pytest.mark.parametrize("role", ROLES)
def test_append_entries_that_do_not_chain(role: str) -> None:
    raft = node(role)
    me, term = raft.id, raft.term + 1
    other = "n3" if me != "n3" else "n1"

    def append(prev_index: int, prev_term: int, *entries: Entry) -> AppendEntries:
        return AppendEntries(
            frm=other,
            to=me,
            term=term,
            prev_index=prev_index,
            prev_term=prev_term,
            entries=entries,
            commit=0,
        )

    refused(raft, append(2, 1, Entry(3, 1), Entry(5, 1)))  # a gap
    refused(raft, append(2, 1, Entry(4, 1)))  # wrong first index
    refused(raft, append(2, 1, Entry(2, 1)))  # first index repeats prev
    refused(raft, append(2, 1, Entry(3, 2), Entry(4, 1)))  # decreasing terms
    refused(raft, append(2, 2, Entry(3, 1)))  # below prev_term
    refused(raft, append(2, 1, Entry(3, term + 1)))  # entry term above the message term
    refused(raft, append(0, 0, Entry(1, 0)))  # term 0 entries do not exist
    text: Any = "text"
    plain_int: Any = 0
    refused(raft, append(2, 1, Entry(3, 1, EntryType.NORMAL, text)))  # data not bytes
    refused(raft, append(2, 1, Entry(3, 1, plain_int, b"")))  # type not an EntryType
    refused(raft, append(2, term + 1))  # prev_term above the message term
    refused(raft, append(0, 1))  # prev_term without a prev_index
    refused(raft, append(3, 0))  # prev_index without a prev_term
    keeps_working(raft)


@pytest.mark.parametrize("role", ROLES)
def test_install_snapshot_with_bad_meta(role: str) -> None:
    raft = node(role)
    me, term = raft.id, raft.term + 1
    other = "n3" if me != "n3" else "n1"
    meta = SnapshotMeta(7, 1, ConfState(IDS))
    chunk = InstallSnapshot(frm=other, to=me, term=term, meta=meta, offset=0, data=b"{}", done=True)
    refused(raft, replace(chunk, meta=None))
    refused(raft, replace(chunk, meta=(7, 1)))
    refused(raft, replace(chunk, meta=SnapshotMeta(0, 1, ConfState(IDS))))
    refused(raft, replace(chunk, meta=SnapshotMeta(-3, 1, ConfState(IDS))))
    refused(raft, replace(chunk, meta=SnapshotMeta(7, 0, ConfState(IDS))))
    refused(raft, replace(chunk, meta=SnapshotMeta(7, term + 1, ConfState(IDS))))
    seven: Any = 7.0
    true: Any = True
    refused(raft, replace(chunk, meta=SnapshotMeta(seven, 1, ConfState(IDS))))
    refused(raft, replace(chunk, meta=SnapshotMeta(7, true, ConfState(IDS))))
    refused(raft, replace(chunk, meta=SnapshotMeta(7, 1, ConfState(()))))
    refused(raft, replace(chunk, data="{}"))
    refused(raft, replace(chunk, offset=-1))
    refused(raft, replace(chunk, done=1))
    keeps_working(raft)


@pytest.mark.parametrize("conf", [None, ("n1", "n2", "n3"), "n1"], ids=repr)
def test_install_snapshot_whose_conf_is_not_a_conf_state(conf: Any) -> None:
    raft = node("follower")
    chunk = InstallSnapshot(
        frm="n1",
        to="n2",
        term=3,
        meta=SnapshotMeta(7, 1, conf),
        offset=0,
        data=b"{}",
        done=True,
    )
    refused(raft, chunk)


# == out-of-protocol but well-formed input is handled by the protocol ============================


@pytest.mark.parametrize("role", ["leader", "leader with a lagging follower"])
def test_append_response_beyond_the_leaders_log_is_refused(role: str) -> None:
    raft = node(role)
    for progress in raft.progress.values():
        progress.recent_active = False  # as just after a check-quorum round
    peer = next(p for p in IDS if p != raft.id)
    beyond = raft.log.last_index + 1
    refused(raft, AppendResponse(frm=peer, to=raft.id, term=raft.term, index=beyond))
    refused(raft, AppendResponse(frm=peer, to=raft.id, term=raft.term, index=beyond + 100))
    refused(
        raft,
        AppendResponse(
            frm=peer, to=raft.id, term=raft.term, index=beyond, reject=True, hint_index=1
        ),
    )
    keeps_working(raft)


@FAST
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_responses_from_unknown_nodes_change_nothing(data: st.DataObject, role: str) -> None:
    raft = node(role)
    kinds = (AppendResponse, HeartbeatResponse, VoteResponse, SnapshotAck)
    msg = data.draw(
        valid_message(raft.id, st.just(raft.term), senders=(STRANGER, "zz"), kinds=kinds)
    )
    before = observe(raft)
    assert step_checked(raft, msg)
    assert observe(raft) == before
    keeps_working(raft)


@FAST
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_messages_with_a_stale_term_change_no_state(data: st.DataObject, role: str) -> None:
    raft = node(role)
    stale = st.integers(0, raft.term - 1)
    before = observe(raft)
    for _ in range(data.draw(st.integers(1, 5))):
        msg = data.draw(valid_message(raft.id, stale, senders=IDS))
        if msg.frm == raft.id:
            continue
        if msg.term >= raft.term:  # InstallSnapshot terms are raised to at least 1
            continue
        assert step_checked(raft, msg)
        # At most an answer telling the sender our term; nothing else moves.
        assert observe(raft)[:-1] == before[:-1]
    keeps_working(raft)


@pytest.mark.parametrize("role", ["follower", "compacted follower"])
def test_append_conflicting_with_the_committed_prefix_is_not_applied(role: str) -> None:
    raft = node(role)
    committed = raft.log.committed
    prefix = [raft.log.term(i) for i in range(raft.log.offset, committed + 1)]
    for term in (2, 3):
        for prev_index, prev_term in ((0, 0), (1, 1), (2, 1), (3, 2)):
            msg = AppendEntries(
                frm="n1",
                to="n2",
                term=term,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=tuple(Entry(prev_index + 1 + k, term) for k in range(4)),
                commit=8,
            )
            step_checked(raft, msg)
            assert [raft.log.term(i) for i in range(raft.log.offset, committed + 1)] == prefix
    assert raft.term == 3
    keeps_working(raft)


@pytest.mark.parametrize("role", ["follower", "compacted follower"])
def test_prev_term_mismatch_is_rejected_with_a_hint(role: str) -> None:
    raft = node(role)
    before = raft.log.entries[:]
    drain(raft)
    msg = AppendEntries(
        frm="n1", to="n2", term=2, prev_index=5, prev_term=1, entries=(Entry(6, 2),), commit=5
    )
    assert step_checked(raft, msg)
    assert raft.log.entries == before
    assert raft.log.committed == 3
    ready = raft.ready()
    assert ready.messages == [
        AppendResponse(frm="n2", to="n1", term=2, index=5, reject=True, hint_index=3, hint_term=2)
    ]
    raft.advance(ready)
    beyond = AppendEntries(
        frm="n1", to="n2", term=2, prev_index=8, prev_term=2, entries=(), commit=8
    )
    assert step_checked(raft, beyond)
    ready = raft.ready()
    assert ready.messages == [
        AppendResponse(frm="n2", to="n1", term=2, index=8, reject=True, hint_index=6, hint_term=0)
    ]
    raft.advance(ready)
    assert raft.log.committed == 3


# == random well-formed sequences ==================================================================


OPERATIONS = ("step", "step", "step", "garbage", "tick", "ready", "propose", "read", "compact")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), role=st.sampled_from(ROLES))
def test_random_well_formed_sequences_never_crash(data: st.DataObject, role: str) -> None:
    """Messages drawn against the node's current term and log, interleaved with ticks, Readies
    (advanced later, so steps land while one is in flight), proposals, reads and compactions."""
    raft = node(role)
    in_flight = None
    for _ in range(data.draw(st.integers(1, 30), label="length")):
        kind = data.draw(st.sampled_from(OPERATIONS), label="op")
        if kind == "step":
            terms = st.integers(max(raft.term - 1, 0), raft.term + 2)
            msg = data.draw(valid_message(raft.id, terms, log=raft.log), label="msg")
            beyond_log = isinstance(msg, AppendResponse) and msg.index > raft.log.last_index
            if not step_checked(raft, msg):
                # Well-formed fields: the only refusal left is an answer about entries we lack.
                assert beyond_log, f"well-formed {msg!r} was refused"
        elif kind == "garbage":
            refused(raft, data.draw(malformed(raft.id, raft.term), label="garbage"))
        elif kind == "tick":
            raft.tick()
        elif kind == "ready":
            if in_flight is None:
                in_flight = raft.ready()
            else:
                raft.advance(in_flight)
                in_flight = None
        elif kind == "propose":
            with contextlib.suppress(NotLeader, ProposalDropped):
                raft.propose(b"k=v")
        elif kind == "read":
            with contextlib.suppress(NotLeader):
                raft.read_index(b"read")
        elif in_flight is None and raft.log.applied > raft.log.offset:
            raft.compact(raft.log.applied, b"{}")
        check_log(raft)
    if in_flight is not None:
        raft.advance(in_flight)
    keeps_working(raft)


# == a live cluster keeps working while it is fed garbage =========================================


def commit_fresh_write(cluster: SimCluster, key: str, value: str, bound: int = 500) -> bool:
    proposed_at: int | None = None
    for _ in range(bound):
        if all(memory(n).get(key) == value for n in cluster.nodes.values()):
            return True
        leader = cluster.leader()
        stale = proposed_at is None or cluster.now - proposed_at > 40
        if leader is not None and stale and cluster.put(leader.id, key, value) is not None:
            proposed_at = cluster.now
        cluster.tick()
    return False


@st.composite
def cluster_garbage(draw: st.DrawFn, raft: Raft) -> tuple[object, bool]:
    """Input that is harmless to a correct cluster: malformed (must be refused), stale, answers
    from strangers, or an acknowledgement beyond a leader's log. Returns (input, must_refuse)."""
    me, term = raft.id, raft.term
    peers = tuple(i for i in IDS if i != me)
    case = draw(st.integers(0, 3))
    if case == 0 or (case == 1 and term == 0):
        return draw(malformed(me, term)), True
    if case == 1:
        stale = valid_message(me, st.integers(0, term - 1), senders=peers)
        return draw(stale.filter(lambda m: m.term < term)), False
    if case == 2:
        kinds = (AppendResponse, HeartbeatResponse, VoteResponse, SnapshotAck, ReadIndexResponse)
        msg = draw(valid_message(me, st.just(term), senders=(STRANGER,), kinds=kinds))
        if isinstance(msg, ReadIndexResponse):
            msg = replace(msg, context=b"garbage-" + msg.context)
        return msg, False
    peer = draw(st.sampled_from(peers))
    beyond = raft.log.last_index + draw(st.integers(1, 5))
    msg = AppendResponse(frm=peer, to=me, term=term, index=beyond)
    return msg, raft.role is Role.LEADER


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 10_000))
def test_cluster_keeps_working_while_fed_garbage(data: st.DataObject, seed: int) -> None:
    cluster = SimCluster(3, seed)
    elect(cluster)
    assert commit_fresh_write(cluster, "before", "1")
    for tick in range(40):
        for _ in range(data.draw(st.integers(0, 2), label=f"injections at {tick}")):
            target = cluster.nodes[data.draw(st.sampled_from(IDS), label="target")]
            raft = target.core()
            garbage, must_refuse = data.draw(cluster_garbage(raft), label="garbage")
            accepted = step_checked(raft, garbage)
            assert not (must_refuse and accepted), f"{garbage!r} was accepted"
            cluster.process(target)
        if tick % 7 == 0:
            leader = cluster.leader()
            if leader is not None:
                cluster.put(leader.id, f"k{tick}", "x")
        cluster.tick()
    assert commit_fresh_write(cluster, "after", "2")  # the Checker ran at every step

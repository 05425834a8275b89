"""The Raft protocol as a deterministic state machine with no I/O (sans-IO, after etcd's raft).

Theory of operation: a `Raft` object is one node's protocol brain. The runtime feeds it inputs:

    tick()                        one unit of logical time passed
    step(message)                 a message arrived from a peer
    propose(data) / propose_batch(items)    the leader appends client commands
    propose_checkpoint()          the leader appends a marker to compare replicas' state at
    read_index(context)           a linearizable read was asked for
    transfer_leadership(target)   hand leadership to a caught-up voter
    report_unreachable(peer)      the transport lost a peer
    compact(index, data)          the state machine snapshotted itself at an applied index (a
                                  leader may send held-back peers what it would cut: the
                                  messages go out with the next Ready)

and collects its outputs with `ready()`: a `Ready` batch of hard state and entries to persist, a
snapshot to install, messages to send, committed entries to apply, and reads that became safe (or
failed). The runtime must persist the hard state, entries and snapshot of a Ready (one fsync;
a hard state whose only change is the commit index may be written without one: a lost commit
index is learned again from the leader) before it sends the Ready's messages, except that
messages from a leader to its followers (AppendEntries, Heartbeat, InstallSnapshot) may go out
while the write is in flight; the leader counts itself towards a commit only for entries it was
told are durable. Then it applies the committed entries in order and calls `advance(ready)`.
`ready()` may not be called again before that `advance`; `step` and `tick` may.

Protocol choices (Raft paper and dissertation sections in brackets):
- randomized election timeout in (election_tick, 2 * election_tick] ticks [3.4], strictly above
  election_tick: the other followers keep a live leader's lease for election_tick of their own
  ticks, and timers counted in ticks fire up to one tick early, so a candidate drawing exactly
  election_tick met followers still in the lease about half the time and lost a whole round;
- pre-vote: a node first asks whether it could win, without raising its term [9.6];
- check-quorum: a leader that heard from no quorum for an election timeout steps down; and leader
  stickiness: a follower that heard from a leader within an election timeout (or that started
  less than an election timeout ago) ignores vote requests, unless they come from a leadership
  transfer, or its transport reported its connection to the leader lost (report_unreachable:
  with pre-vote and without lease reads only) [4.2.3, 6.2];
- a no-op entry on election; commit only by counting replicas of a current-term entry [3.6.2];
- conflict hints on rejected appends, so the leader skips a whole term per round trip [5.3];
- per-peer progress in probe / replicate / snapshot; pipelined appends bounded by an inflight
  window in messages and bytes; many entries per message up to max_msg_bytes [10.2.2];
- with quorum_fanout, new entries go at once only to as many voters as a commit needs (those
  streaming, then the furthest along); the other streaming peers are streamed to from when they
  answer a heartbeat behind until they hold what the leader held then, and are sent what a
  compaction would cut first (not in the papers; see docs/protocol.md);
- ReadIndex and, with check-quorum, lease reads [6.4] (see read_only.py);
- leadership transfer with TimeoutNow [3.10]; snapshots sent in chunks [5.1].
Sends are built lazily: proposals and acknowledgements only mark peers dirty, and `ready()` turns
them into as few AppendEntries as the limits allow, so a burst of proposals batches itself.
A new commit index is not broadcast on its own: followers learn it from the next AppendEntries
or from the next heartbeat (every heartbeat carries it), so a sequential write costs four
messages, not six (two, with quorum_fanout in a 3-node cluster, and the held-back follower's
share of a batch per heartbeat). Only a leader stepping down after its own removal, and the
answer to a follower's ReadIndex, send it at once.

The core never reads a clock, a socket, a file or a global RNG; given the same inputs (and RNG
seed) it produces the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import RaftConfig
from .errors import (
    ConfChangeRejected,
    InvalidMessage,
    NotLeader,
    ProposalDropped,
    ReadyMisuse,
    SnapshotError,
)
from .log import RaftLog
from .membership import ConfChange, ConfChangeKind, ConfHistory, apply_change
from .messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotAck,
    TimeoutNow,
    VoteResponse,
    validate_message,
)
from .progress import Inflights, Progress, ProgressState
from .quorum import VoteResult, majority, quorum_value, vote_result
from .read_only import PendingRead, ReadTracker
from .types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    NodeId,
    RandomSource,
    ReadState,
    RestoredState,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)


class TransferRejected(ProposalDropped):
    """A leadership transfer names a node that cannot lead (unknown, or a learner)."""


@dataclass(slots=True)
class Ready:
    """One batch of work for the runtime; see the module docstring for the contract."""

    soft_state: SoftState | None
    hard_state: HardState | None
    snapshot: Snapshot | None
    entries: list[Entry]
    committed_entries: list[Entry]
    messages: list[Message]
    read_states: list[ReadState] = field(default_factory=list)
    failed_reads: list[bytes] = field(default_factory=list)
    commit_only: bool = False  # hard_state differs from the last one only in its commit index

    @property
    def must_sync(self) -> bool:
        """Does this Ready carry anything that must be fsynced before its messages go out?"""
        changed_vote = self.hard_state is not None and not self.commit_only
        return bool(self.entries) or changed_vote or self.snapshot is not None


@dataclass(frozen=True, slots=True)
class Status:
    id: NodeId
    role: Role
    term: int
    leader: NodeId | None
    commit: int
    applied: int
    last_index: int
    first_index: int
    progress: dict[NodeId, Progress]


_LEADER_TO_FOLLOWER = (AppendEntries, Heartbeat, InstallSnapshot)


class Raft:
    def __init__(
        self, config: RaftConfig, rng: RandomSource, restored: RestoredState | None = None
    ) -> None:
        self.config = config
        self.id = config.id
        self._rng = rng
        hard = restored.hard_state if restored else HardState()
        snapshot = restored.snapshot if restored else None
        entries = list(restored.entries) if restored else []
        if snapshot is not None:
            base_conf = snapshot.meta.conf
            self.log = RaftLog(snapshot.meta.index, snapshot.meta.term, entries, hard.commit)
        else:
            base_conf = ConfState(config.voters, config.learners)
            self.log = RaftLog(0, 0, entries, hard.commit)
        self._confs = ConfHistory(base_conf, entries)
        self.conf = self._confs.current
        self.snapshot = snapshot
        self.term = hard.term
        self.vote = hard.vote
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self.progress: dict[NodeId, Progress] = {}
        self.transfer_target: NodeId | None = None
        self._votes: dict[NodeId, bool] = {}
        self._now = 0
        self._last_leader_contact = 0  # a fresh start counts as contact: see _in_lease
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = config.election_tick
        self._reads = ReadTracker()
        self._reads_awaiting_commit: list[tuple[bytes, NodeId | None]] = []
        self._lease_revoked = False
        self._incoming_snapshot: tuple[SnapshotMeta, bytearray] | None = None
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._failed_reads: list[bytes] = []
        self._dirty_peers: set[NodeId] = set()
        self._broadcast_commit = False
        self._heartbeat_needed = False
        self._handed_out_hard = hard
        self._handed_out_soft = SoftState(None, Role.FOLLOWER)
        self._ready_in_flight = False
        self._handlers: dict[type[Message], Callable[[Any], None]] = {
            AppendEntries: self._on_append,
            AppendResponse: self._on_append_response,
            Heartbeat: self._on_heartbeat,
            HeartbeatResponse: self._on_heartbeat_response,
            RequestVote: self._on_vote_request,
            VoteResponse: self._on_vote_response,
            InstallSnapshot: self._on_snapshot_chunk,
            SnapshotAck: self._on_snapshot_ack,
            TimeoutNow: self._on_timeout_now,
            ReadIndexRequest: self._on_read_request,
            ReadIndexResponse: self._on_read_response,
        }
        self._reset_election_timer()
        if self.conf.voters == (self.id,):
            self._campaign(pre_vote=False, transfer=False)

    # == inputs ===================================================================================

    def tick(self) -> None:
        self._now += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._promotable() and self._election_elapsed >= self._randomized_timeout:
                self._campaign(pre_vote=self.config.pre_vote, transfer=False)

    def step(self, message: object) -> None:
        """Feed one message from a peer. Raises InvalidMessage (changing nothing) if malformed."""
        msg = validate_message(message, self.id)
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                if not msg.transfer and self._in_lease():
                    return  # stickiness: a live leader exists; do not even raise our term
                if not msg.pre_vote:
                    self._become_follower(msg.term, None)
            elif isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
                pass  # a granted pre-vote echoes the term we would campaign in
            else:
                leader = msg.frm if isinstance(msg, _LEADER_TO_FOLLOWER) else None
                self._become_follower(msg.term, leader)
        elif msg.term < self.term:
            self._answer_stale(msg)
            return
        self._handlers[type(msg)](msg)

    def propose(self, data: bytes) -> int:
        """Append one command; returns its log index. The caller waits for it to be applied there
        with the current term: if another entry is applied at that index, the proposal was lost."""
        return self.propose_batch((data,))

    def propose_batch(self, items: Sequence[bytes]) -> int:
        """Append several commands in one go; returns the index of the last."""
        self._check_may_propose()
        for item in items:
            if not isinstance(item, bytes):
                raise TypeError(f"a proposal must be bytes, not {type(item).__name__}")
        return self._append_own(EntryType.NORMAL, items)

    def propose_checkpoint(self) -> int:
        """Append a checkpoint marker (a CHECKPOINT entry, no data); returns its index. The
        state machine skips it; each runtime that applies it notes a digest of its state there,
        so replicas can be compared at one index. Raises like `propose`."""
        self._check_may_propose()
        return self._append_own(EntryType.CHECKPOINT, (b"",))

    def _check_may_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise ProposalDropped(f"leadership is being transferred to {self.transfer_target}")

    def _append_own(self, entry_type: EntryType, items: Sequence[bytes]) -> int:
        term = self.term
        first = self.log.last_index + 1
        self.log.append([Entry(first + k, term, entry_type, item) for k, item in enumerate(items)])
        self._dirty_peers.update(self.progress)
        return self.log.last_index

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; the answer comes back as a ReadState in a later Ready
        (or as a failed read if leadership is lost first)."""
        if self.role is Role.LEADER:
            self._leader_read(context, None)
        elif self.leader is not None:
            self._send(
                ReadIndexRequest(frm=self.id, to=self.leader, term=self.term, context=context)
            )
        else:
            raise NotLeader(None)

    def transfer_leadership(self, target: NodeId) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target == self.id:
            return
        if target not in self.conf.voters:
            raise TransferRejected(f"{target} is not a voter of this cluster")
        if self.transfer_target == target:
            return
        self.transfer_target = target
        self._election_elapsed = 0  # the transfer is abandoned after one election timeout
        if self.progress[target].match == self.log.last_index:
            self._send_timeout_now(target)
        else:
            self._dirty_peers.add(target)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a membership change; returns its index. It takes effect at once (on each
        server when the entry reaches its log) and is safe once committed.

        Raises NotLeader, or ConfChangeRejected: another change not yet committed, no entry of
        this term committed yet (the 2015 single-server fix), a change that does not apply to
        the current configuration, or promoting a learner that has not caught up.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        log = self.log
        if self.transfer_target is not None:
            raise ConfChangeRejected(f"leadership is being transferred to {self.transfer_target}")
        if log.term(log.committed) != self.term:
            raise ConfChangeRejected("no entry of this leader's term is committed yet; retry")
        if self._confs.last_change_index > log.committed:
            raise ConfChangeRejected("another membership change is not committed yet; retry")
        apply_change(self.conf, change)  # raises if it does not apply
        if change.kind is ConfChangeKind.PROMOTE:
            self._check_caught_up(change.node)
        entry = Entry(log.last_index + 1, self.term, EntryType.CONF_CHANGE, change.encode())
        log.append([entry])
        self._confs.appended([entry])
        self._conf_changed()
        self._dirty_peers.update(self.progress)
        return entry.index

    def _check_caught_up(self, learner: NodeId) -> None:
        """A learner may become a voter when it holds the whole log, or when a whole round of
        replication (bringing it to the leader's last index as it was when the round began)
        took less than the promotion limit and the round in progress is not already over it
        (dissertation 4.2.1)."""
        progress = self.progress[learner]
        if progress.match >= self.log.last_index:
            return  # it holds the whole log right now
        limit = self.config.promotion_round_ticks or self.config.election_tick
        running = self._now - progress.round_start
        if progress.last_round is None or progress.last_round >= limit or running >= limit:
            last = "none finished" if progress.last_round is None else f"{progress.last_round}"
            raise ConfChangeRejected(
                f"learner {learner} has not caught up: last replication round {last} ticks, "
                f"current {running} (limit {limit}); match {progress.match} of "
                f"{self.log.last_index}"
            )

    def report_unreachable(self, peer: NodeId) -> None:
        """The transport lost `peer` (a send failed, its connection closed). A leader stops
        streaming to it and probes instead. A follower that lost its leader takes it for gone (a
        crashed process's connections close at once): the leader's lease ends, and the
        follower campaigns after a fresh 1..election_tick ticks instead of the rest of its
        timeout. If the leader lives on, the followers that still hear it are in its lease and
        refuse the pre-vote, so no term moves; its next message resets the timer as usual. Only
        with pre-vote (without it, a wrong report could depose a live leader) and without lease
        reads (a leader serving reads from its lease counts on every follower refusing votes for
        a whole election timeout after hearing from it)."""
        if self.role is Role.LEADER:
            progress = self.progress.get(peer)
            if progress is not None and progress.state is ProgressState.REPLICATE:
                progress.become_probe()
        elif (
            self.role is Role.FOLLOWER
            and peer == self.leader
            and self.config.pre_vote
            and not self.config.lease_read
        ):
            tick = self.config.election_tick
            self._last_leader_contact = self._now - tick
            soon = self._randomized_timeout - self._rng.randrange(1, tick + 1)
            self._election_elapsed = max(self._election_elapsed, soon)

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Take the state machine's snapshot `data`, taken at applied `index`, and drop the log
        up to it. Returns the snapshot, which the runtime must persist. With quorum_fanout, a
        leader first sends its held-back peers the entries up to `index` they were not sent, as
        far as their replication windows allow (the messages go out with the next Ready):
        entries about to be sent are no reason to send a snapshot."""
        log = self.log
        if index <= log.offset:
            raise SnapshotError(
                f"index {index} is already compacted (log starts after {log.offset})"
            )
        if index > log.applied:
            raise SnapshotError(f"index {index} is not applied yet (applied {log.applied})")
        term = log.term(index)
        assert term is not None
        if self.role is Role.LEADER and self.config.quorum_fanout:
            for peer, progress in self.progress.items():
                streaming = progress.state is ProgressState.REPLICATE
                if peer != self.id and streaming and progress.next <= index:
                    progress.catch_up_to = max(progress.catch_up_to, index)
                    self._send_appends(peer, allow_empty=False)
        snapshot = Snapshot(SnapshotMeta(index, term, self._confs.at(index)), data)
        log.compact(index)
        self._confs.compact(index)
        self.snapshot = snapshot
        return snapshot

    # == outputs ==================================================================================

    def has_ready(self) -> bool:
        if self._ready_in_flight:
            return False
        self._flush_sends()
        log = self.log
        return bool(
            self._msgs
            or log.has_unstable()
            or log.has_entries_to_apply()
            or log.pending_snapshot is not None
            or self._read_states
            or self._failed_reads
            or self._hard_state() != self._handed_out_hard
            or self._soft_state() != self._handed_out_soft
        )

    def ready(self) -> Ready:
        if self._ready_in_flight:
            raise ReadyMisuse("ready() called again before advance()")
        self._flush_sends()
        hard, soft, last_hard = self._hard_state(), self._soft_state(), self._handed_out_hard
        ready = Ready(
            soft_state=soft if soft != self._handed_out_soft else None,
            hard_state=hard if hard != last_hard else None,
            snapshot=self.log.pending_snapshot,
            entries=self.log.unstable_entries(),
            committed_entries=self.log.entries_to_apply(),
            messages=self._msgs,
            read_states=self._read_states,
            failed_reads=self._failed_reads,
            commit_only=hard[:2] == last_hard[:2],
        )
        self._handed_out_hard, self._handed_out_soft = hard, soft
        self._msgs, self._read_states, self._failed_reads = [], [], []
        self._ready_in_flight = True
        return ready

    def advance(self, ready: Ready) -> None:
        """The runtime persisted, sent and applied `ready`."""
        if not self._ready_in_flight:
            raise ReadyMisuse("advance() without a ready() in flight")
        self._ready_in_flight = False
        log = self.log
        if ready.snapshot is not None and log.pending_snapshot is ready.snapshot:
            log.pending_snapshot = None
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
        if ready.committed_entries:
            log.applied = max(log.applied, ready.committed_entries[-1].index)
        if self.role is Role.LEADER and self.progress[self.id].maybe_update(log.stable):
            self._maybe_commit()

    def status(self) -> Status:
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            leader=self.leader,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index,
            first_index=self.log.offset + 1,
            progress=dict(self.progress) if self.role is Role.LEADER else {},
        )

    # == roles ====================================================================================

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role)

    @property
    def committed_conf(self) -> ConfState:
        """The configuration of the committed log: it differs from `conf` while a change is
        appended but not committed (a member being removed still counts for the runtime then:
        it may be the leader, waiting for the acknowledgements that commit its removal)."""
        return self._confs.at(self.log.committed)

    def _track(self, peer: NodeId) -> None:
        """Start a leader's Progress for `peer` (a new member, or every member on election)."""
        config = self.config
        progress = Progress(
            self.log.last_index + 1, Inflights(config.max_inflight_msgs, config.max_inflight_bytes)
        )
        progress.start_round(self._now, self.log.last_index)
        self.progress[peer] = progress

    def _conf_changed(self) -> None:
        """The configuration may have changed: a leader tracks exactly the members (and
        itself, whose durable log counts only while it is a voter)."""
        self.conf = conf = self._confs.current
        if self.role is not Role.LEADER:
            return
        for peer in conf.members:
            if peer not in self.progress:
                self._track(peer)
                self._dirty_peers.add(peer)
        for peer in [p for p in self.progress if p not in conf.members and p != self.id]:
            del self.progress[peer]
            self._dirty_peers.discard(peer)
            if self.transfer_target == peer:
                self.transfer_target = None

    def _promotable(self) -> bool:
        return self.id in self.conf.voters

    def _in_lease(self) -> bool:
        """Should a vote request from a higher term be ignored because a leader is alive?"""
        if not self.config.check_quorum:
            return False
        if self.role is Role.LEADER:
            return True
        return (
            self.role is Role.FOLLOWER
            and self._now - self._last_leader_contact < self.config.election_tick
        )

    def _reset_election_timer(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        tick = self.config.election_tick
        self._randomized_timeout = self._rng.randrange(tick + 1, 2 * tick + 1)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self._votes = {}
        self.transfer_target = None
        if self.role is Role.LEADER:
            self._drop_pending_reads()
        self.progress = {}
        self._dirty_peers.clear()
        self._broadcast_commit = False
        self._heartbeat_needed = False

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        # Only hearing from a leader (or stepping down from leading) restarts the election timer.
        # Learning of a higher term from a candidate does not (Raft paper, Figure 2): otherwise a
        # candidate that cannot win, campaigning again and again, keeps resetting the timers of
        # the nodes that could (without pre-vote this stalls elections).
        was_leader = self.role is Role.LEADER
        self._reset(term)
        if was_leader or leader is not None:
            self._reset_election_timer()
        self.role = Role.FOLLOWER
        self.leader = leader
        if leader is not None:
            self._last_leader_contact = self._now

    def _become_leader(self) -> None:
        self._reset(self.term)
        self._reset_election_timer()
        self.role = Role.LEADER
        self.leader = self.id
        self._lease_revoked = False
        log = self.log
        for peer in (*self.conf.members, self.id):
            self._track(peer)
        self.progress[self.id].maybe_update(log.stable)
        self._dirty_peers.update(self.progress)
        self._dirty_peers.discard(self.id)
        log.append([Entry(log.last_index + 1, self.term, EntryType.NOOP)])
        # A sole voter's no-op commits as soon as it is durable (advance).

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            vote_term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            vote_term = self.term
        self._reset_election_timer()
        self._votes[self.id] = True
        if vote_result(self.conf.voters, self._votes) is VoteResult.WON:
            self._won_votes()
            return
        last_index, last_term = self.log.last_index, self.log.last_term
        for peer in self.conf.voters:
            if peer != self.id:
                self._send(
                    RequestVote(
                        frm=self.id,
                        to=peer,
                        term=vote_term,
                        last_index=last_index,
                        last_term=last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    def _won_votes(self) -> None:
        if self.role is Role.PRE_CANDIDATE:
            self._campaign(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_tick:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_recently_active():
                self._become_follower(self.term, None)
                return
            self.transfer_target = None  # a transfer that took an election timeout has failed
        if self._heartbeat_elapsed >= self.config.heartbeat_tick:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_recently_active(self) -> bool:
        active = 0
        for peer in self.conf.voters:
            progress = self.progress[peer]
            if peer == self.id or progress.recent_active:
                active += 1
            progress.recent_active = False
        return active * 2 > len(self.conf.voters)

    # == messages in ==============================================================================

    def _answer_stale(self, msg: Message) -> None:
        """A message from an older term. Most are ignored; two are answered so that the sender
        learns our term (with check-quorum or pre-vote our term may never reach it otherwise)."""
        if isinstance(msg, AppendEntries | Heartbeat) and (
            self.config.check_quorum or self.config.pre_vote
        ):
            self._send(AppendResponse(frm=self.id, to=msg.frm, term=self.term, index=0))
        elif isinstance(msg, RequestVote) and msg.pre_vote:
            self._send(
                VoteResponse(frm=self.id, to=msg.frm, term=self.term, granted=False, pre_vote=True)
            )

    def _heard_from_leader(self, msg: Message) -> bool:
        """A leader of our term spoke. Returns False if that cannot be (we lead this term)."""
        if self.role is Role.LEADER:
            return False  # two leaders in one term: a broken or hostile peer; ignore it
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, msg.frm)
        self.leader = msg.frm
        self._election_elapsed = 0
        self._last_leader_contact = self._now
        return True

    def _on_append(self, msg: AppendEntries) -> None:
        if not self._heard_from_leader(msg):
            return
        log = self.log
        if msg.prev_index < log.committed:
            self._send_append_response(msg.frm, log.committed)
            return
        last = log.maybe_append(msg.prev_index, msg.prev_term, msg.commit, msg.entries)
        if last is not None:
            if msg.entries:
                self._confs.follow(log, msg.entries)
                self._conf_changed()
            self._send_append_response(msg.frm, last)
            return
        if msg.prev_index > log.last_index:
            hint_index, hint_term = log.last_index + 1, 0
        else:
            hint_term = log.term(msg.prev_index) or 0
            hint_index = log.first_index_of_term(msg.prev_index)
        self._send(
            AppendResponse(
                frm=self.id,
                to=msg.frm,
                term=self.term,
                index=msg.prev_index,
                reject=True,
                hint_index=hint_index,
                hint_term=hint_term,
            )
        )

    def _send_append_response(self, to: NodeId, index: int) -> None:
        self._send(AppendResponse(frm=self.id, to=to, term=self.term, index=index))

    def _on_append_response(self, msg: AppendResponse) -> None:
        progress = self.progress.get(msg.frm) if self.role is Role.LEADER else None
        if progress is None:
            return
        if msg.index > self.log.last_index:
            raise InvalidMessage(f"{msg.frm} answered about index {msg.index}, beyond our log")
        progress.recent_active = True
        if msg.reject:
            next_hint = msg.hint_index
            if msg.hint_term:
                last_of_term = self.log.last_index_of_term(msg.hint_term)
                if last_of_term is not None:
                    next_hint = last_of_term + 1
            if progress.maybe_decrease_to(msg.index, max(next_hint, 1)):
                self._dirty_peers.add(msg.frm)
            return
        caught_up_probe = progress.state is ProgressState.PROBE and msg.index == progress.match
        if not progress.maybe_update(msg.index) and not caught_up_probe:
            return
        if progress.match >= progress.round_end:
            progress.finish_round(self._now, self.log.last_index)
        state = progress.state
        if state is ProgressState.PROBE:
            progress.become_replicate()
        elif state is ProgressState.SNAPSHOT:
            if progress.match >= progress.snapshot_index:
                progress.become_probe()
                progress.become_replicate()
        else:
            progress.inflights.free_to(msg.index)
        self._maybe_commit()
        self._dirty_peers.add(msg.frm)
        if msg.frm == self.transfer_target and progress.match == self.log.last_index:
            self._send_timeout_now(msg.frm)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        if not self._heard_from_leader(msg):
            return
        self.log.commit_to(msg.commit)
        self._send(HeartbeatResponse(frm=self.id, to=msg.frm, term=self.term, round=msg.round))

    def _on_heartbeat_response(self, msg: HeartbeatResponse) -> None:
        progress = self.progress.get(msg.frm) if self.role is Role.LEADER else None
        if progress is None:
            return
        progress.recent_active = True
        if progress.state is ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(msg.frm, progress)  # resend in case a chunk was lost
        elif progress.match < self.log.last_index or progress.state is ProgressState.PROBE:
            # The peer is behind and what we sent it may have been lost, or it is being probed
            # (after report_unreachable, say). Send again: an empty append at the end of what was
            # sent gets an answer that confirms it (back to streaming) or starts a probe, so lost
            # appends are noticed even in an idle cluster.
            progress.probe_sent = False
            progress.catch_up_to = self.log.last_index  # held back or not: catch it up
            if progress.is_paused():  # a full replication window
                self._send_append(msg.frm, progress, [], 0)
            else:
                self._send_appends(msg.frm, allow_empty=True)
        if msg.frm in self.conf.voters:
            self._reads.ack(msg.frm, msg.round)
            self._release_reads()

    def _on_vote_request(self, msg: RequestVote) -> None:
        can_vote = (
            self.vote == msg.frm
            or (self.vote is None and self.leader is None)
            or (msg.pre_vote and msg.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(msg.last_index, msg.last_term)
        self._send(
            VoteResponse(
                frm=self.id,
                to=msg.frm,
                term=msg.term if granted else self.term,
                granted=granted,
                pre_vote=msg.pre_vote,
            )
        )
        if granted and not msg.pre_vote:
            self.vote = msg.frm
            self._election_elapsed = 0

    def _on_vote_response(self, msg: VoteResponse) -> None:
        expected = Role.PRE_CANDIDATE if msg.pre_vote else Role.CANDIDATE
        if self.role is not expected or msg.frm not in self.conf.voters:
            return
        self._votes.setdefault(msg.frm, msg.granted)
        result = vote_result(self.conf.voters, self._votes)
        if result is VoteResult.WON:
            self._won_votes()
        elif result is VoteResult.LOST:
            self._become_follower(self.term, None)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if msg.frm == self.leader and self.role is Role.FOLLOWER and self._promotable():
            self._campaign(pre_vote=False, transfer=True)

    def _on_snapshot_chunk(self, msg: InstallSnapshot) -> None:
        if not self._heard_from_leader(msg):
            return
        meta, log = msg.meta, self.log
        if meta.index <= log.committed:
            self._incoming_snapshot = None
            self._send_append_response(msg.frm, log.committed)
            return
        incoming = self._incoming_snapshot
        if msg.offset == 0:
            incoming = (meta, bytearray())
        elif incoming is None or incoming[0] != meta or msg.offset != len(incoming[1]):
            received = len(incoming[1]) if incoming is not None and incoming[0] == meta else 0
            self._send_snapshot_ack(msg.frm, meta.index, received)
            return
        incoming[1].extend(msg.data)
        if not msg.done:
            self._incoming_snapshot = incoming
            self._send_snapshot_ack(msg.frm, meta.index, len(incoming[1]))
            return
        self._incoming_snapshot = None
        if log.match_term(meta.index, meta.term):
            log.commit_to(meta.index)  # we hold the log the snapshot covers: just fast-forward
            self._send_append_response(msg.frm, log.committed)
            return
        snapshot = Snapshot(meta, bytes(incoming[1]))
        log.restore(snapshot)
        self.snapshot = snapshot
        self._confs.restore(meta.conf)
        self._conf_changed()
        self._send_append_response(msg.frm, log.last_index)

    def _send_snapshot_ack(self, to: NodeId, snapshot_index: int, received: int) -> None:
        self._send(
            SnapshotAck(
                frm=self.id, to=to, term=self.term, snapshot_index=snapshot_index, received=received
            )
        )

    def _on_snapshot_ack(self, msg: SnapshotAck) -> None:
        progress = self.progress.get(msg.frm) if self.role is Role.LEADER else None
        if progress is None:
            return
        progress.recent_active = True
        if (
            progress.state is ProgressState.SNAPSHOT
            and msg.snapshot_index == progress.snapshot_index
            and self.snapshot is not None
            and msg.received <= len(self.snapshot.data)
            and msg.received != progress.snapshot_offset  # not a duplicate: no chunk ping-pong
        ):
            progress.snapshot_offset = msg.received
            self._send_snapshot_chunk(msg.frm, progress)

    def _on_read_request(self, msg: ReadIndexRequest) -> None:
        if self.role is Role.LEADER:
            self._leader_read(msg.context, msg.frm)
        else:
            self._answer_read(msg.context, -1, msg.frm)

    def _on_read_response(self, msg: ReadIndexResponse) -> None:
        if msg.index < 0:
            self._failed_reads.append(msg.context)
        else:
            self._read_states.append(ReadState(msg.index, msg.context))

    # == replication ==============================================================================

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _maybe_commit(self) -> None:
        """Advance the commit index to what a quorum matched, if that is a current-term entry."""
        progress = self.progress
        index = quorum_value([progress[voter].match for voter in self.conf.voters])
        first_in_term = self.log.term(self.log.committed) != self.term
        if self.log.maybe_commit(index, self.term):
            if first_in_term:
                awaiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
                for context, requester in awaiting:
                    self._leader_read(context, requester)
            if self.id not in self.conf.voters and self._confs.last_change_index <= index:
                self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Our own removal committed: tell the followers (so they learn it is committed), hand
        leadership to the most up-to-date voter that has the whole log, and stop leading."""
        self._broadcast_commit = True
        self._flush_sends()
        caught_up = [
            peer for peer in self.conf.voters if self.progress[peer].match == self.log.last_index
        ]
        if caught_up:
            self._send(TimeoutNow(frm=self.id, to=caught_up[0], term=self.term))
        self._become_follower(self.term, None)

    def _flush_sends(self) -> None:
        """Turn the marks left by proposals, acks and commits into messages."""
        if self.role is not Role.LEADER:
            return
        if self._heartbeat_needed:
            self._broadcast_heartbeat()
        if self._broadcast_commit:
            self._broadcast_commit = False
            for peer in self.progress:
                if peer != self.id:
                    self._send_appends(peer, allow_empty=True)
            self._dirty_peers.clear()
        elif self._dirty_peers:
            held_back = self._held_back() if self.config.quorum_fanout else set()
            for peer in sorted(self._dirty_peers):
                if peer != self.id and peer not in held_back:
                    self._send_appends(peer, allow_empty=False)
            self._dirty_peers.clear()

    def _held_back(self) -> set[NodeId]:
        """With quorum_fanout: the streaming peers that are not among the followers a commit
        needs (those streaming first, then the furthest along). Never held back: the transfer
        target, and a peer being caught up (from when it answers a heartbeat behind, or a
        compaction would cut what it lacks, until it has been sent what the leader held then:
        one replication window at a time, like any other peer)."""
        progress, voters = self.progress, self.conf.voters
        needed = majority(len(voters)) - (1 if self.id in voters else 0)
        ranked = sorted(
            (peer for peer in voters if peer != self.id),
            key=lambda peer: (
                progress[peer].state is not ProgressState.REPLICATE,
                -progress[peer].match,
                peer,
            ),
        )
        first = set(ranked[:needed])
        return {
            peer
            for peer, peer_progress in progress.items()
            if peer != self.id
            and peer not in first
            and peer != self.transfer_target
            and peer_progress.state is ProgressState.REPLICATE
            and peer_progress.next > peer_progress.catch_up_to
        }

    def _send_appends(self, peer: NodeId, *, allow_empty: bool) -> None:
        """Send `peer` as many AppendEntries as its progress state and window allow."""
        progress = self.progress[peer]
        log = self.log
        while not progress.is_paused():
            if progress.next <= log.last_index:
                if progress.next <= log.offset:
                    self._send_snapshot_chunk(peer, progress)
                    return
                entries, size = log.slice(
                    progress.next, log.last_index + 1, self.config.max_msg_bytes
                )
            elif allow_empty:
                entries, size = [], 0
            else:
                return
            if not self._send_append(peer, progress, entries, size):
                return
            allow_empty = False

    def _send_append(
        self, peer: NodeId, progress: Progress, entries: list[Entry], size: int
    ) -> bool:
        """Send one AppendEntries after progress.next - 1. Returns whether more may follow."""
        prev_index = progress.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            self._send_snapshot_chunk(peer, progress)
            return False
        self._send(
            AppendEntries(
                frm=self.id,
                to=peer,
                term=self.term,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if entries:
            progress.sent_entries(entries[-1].index, size)
            return True
        if progress.state is ProgressState.PROBE:
            progress.probe_sent = True
        return False

    def _send_snapshot_chunk(self, peer: NodeId, progress: Progress) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            raise AssertionError("the log was compacted without a snapshot")
        if progress.state is not ProgressState.SNAPSHOT or (
            progress.snapshot_index != snapshot.meta.index
        ):
            progress.become_snapshot(snapshot.meta.index)
        offset = progress.snapshot_offset
        chunk = snapshot.data[offset : offset + self.config.snapshot_chunk_bytes]
        self._send(
            InstallSnapshot(
                frm=self.id,
                to=peer,
                term=self.term,
                meta=snapshot.meta,
                offset=offset,
                data=chunk,
                done=offset + len(chunk) >= len(snapshot.data),
            )
        )

    def _send_timeout_now(self, target: NodeId) -> None:
        self._lease_revoked = True  # the target will ignore stickiness: our lease is void
        self._send(TimeoutNow(frm=self.id, to=target, term=self.term))

    def _broadcast_heartbeat(self) -> None:
        self._heartbeat_needed = False
        round_ = self._reads.new_round(self._now)
        committed = self.log.committed
        for peer, progress in self.progress.items():
            if peer != self.id:
                self._send(
                    Heartbeat(
                        frm=self.id,
                        to=peer,
                        term=self.term,
                        commit=min(progress.match, committed),
                        round=round_,
                    )
                )
        self._release_reads()

    # == reads ====================================================================================

    def _leader_read(self, context: bytes, requester: NodeId | None) -> None:
        log = self.log
        if log.term(log.committed) != self.term:
            # Until an entry of this term commits, our commit index may lag the cluster's.
            self._reads_awaiting_commit.append((context, requester))
            return
        if self.config.lease_read and not self._lease_revoked:
            quorum_round = self._reads.quorum_round(self.conf.voters, self.id)
            lease_ticks = self.config.election_tick - self.config.max_clock_drift_ticks
            if self._reads.lease_holds(quorum_round, self._now, lease_ticks):
                self._answer_read(context, log.committed, requester)
                return
        self._reads.add(log.committed, context, requester)
        self._heartbeat_needed = True

    def _release_reads(self) -> None:
        quorum_round = self._reads.quorum_round(self.conf.voters, self.id)
        for read in self._reads.release(quorum_round):
            self._answer_read(read.context, read.index, read.requester)

    def _answer_read(self, context: bytes, index: int, requester: NodeId | None) -> None:
        if requester is None:
            if index < 0:
                self._failed_reads.append(context)
            else:
                self._read_states.append(ReadState(index, context))
        else:
            self._send(
                ReadIndexResponse(
                    frm=self.id, to=requester, term=self.term, context=context, index=index
                )
            )
            if index > 0 and requester in self.progress:
                # It waits to apply up to `index`: tell it the commit index now.
                self._send_appends(requester, allow_empty=True)

    def _drop_pending_reads(self) -> None:
        dropped: list[PendingRead] = self._reads.reset()
        reads = [(read.context, read.requester) for read in dropped]
        reads.extend(self._reads_awaiting_commit)
        self._reads_awaiting_commit = []
        for context, requester in reads:
            self._answer_read(context, -1, requester)

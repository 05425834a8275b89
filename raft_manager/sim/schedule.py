"""One seeded fault schedule: chaos for a while, then heal and demand progress.

Theory of operation: the seed alone decides everything (cluster size when not fixed, the Raft
tunables, every fault and client operation), so a failing seed replays exactly. A run has two
phases:

1. Chaos, `steps` ticks: each tick brings client work (workload.py: memory writes and
   linearizable reads, task submits, claims under leases, completions, failures, renewals, with
   retried and duplicated requests) and may inject faults (crash, crash in the middle of a write,
   restart, symmetric and asymmetric partitions, healing, loss / duplication / long-delay rates,
   log compaction, leadership transfer; with `membership`, membership changes through the
   leader), then advances virtual time. Disk writes take 0 to
   `disk_latency` ticks (0, 1 or 3 by seed), so crashes also strike writes in flight. Each node's
   clock runs ahead of virtual time by a fixed skew of 0 to 500 ms (or none, by seed), and an idle
   leader proposes a `clock` entry every CLOCK_EVERY ticks. The invariant checker runs inside
   every node step.
2. Liveness: the clients stop, the network heals and every node restarts. A fresh write must then
   commit, and the cluster must never stall on the way: every `stall_bound` ticks (an election
   included) the commit index must advance or the nodes together must durably hold more entries
   than ever before; and the write must be applied within `liveness_bound` ticks (generous: it
   waits behind whatever backlog the chaos left, and with one entry per message, a window of one
   and slow disks a backlog drains slowly). Otherwise the run fails with a Liveness violation.
   Then the clients take their last answers and every node's ledger is audited against the
   acknowledged submits (the Checker's Acknowledged Submit and Exactly Once).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from raft_manager.core.membership import ConfChangeKind

from .cluster import DiskProvider, SimCluster
from .invariants import InvariantViolation
from .network import LinkFaults
from .workload import Workload, believed_leader

ELECTION_TICK = 10
ADD_LEARNER, PROMOTE, REMOVE = (
    ConfChangeKind.ADD_LEARNER,
    ConfChangeKind.PROMOTE,
    ConfChangeKind.REMOVE,
)
CLOCK_EVERY = 10  # ticks: an idle leader's clock entries (1 s, the node's default)


@dataclass(frozen=True, slots=True)
class SimOptions:
    nodes: int | None = None  # None: 3 or 5, chosen by the seed
    steps: int = 300
    # With a disk provider, every disk_every-th seed also writes real storage (0: none).
    disks: DiskProvider | None = None
    disk_every: int = 0
    # Split votes can repeat: with 3-tick disks a round of pre-vote and vote, each behind a write,
    # lasts about as long as the 10 ticks election timeouts are spread over. The longest stall in
    # the 4,000 seeds of the two sweeps is 121 ticks (seed 3551, five split rounds in a row).
    stall_bound: int = 15 * ELECTION_TICK
    liveness_bound: int = 300 * ELECTION_TICK
    # Random membership changes (SPARES extra nodes that start as non-members; see _Chaos).
    membership: bool = False


SPARES = 2  # nodes beyond the initial voters, with membership changes
MIN_VOTERS = 3  # membership changes never remove a voter below this


@dataclass(slots=True)
class Violation:
    seed: int
    invariant: str
    detail: str
    trace: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SeedResult:
    seed: int
    nodes: int
    config: dict[str, Any]
    ticks: int = 0
    node_steps: int = 0
    elections: int = 0
    commits: int = 0
    reads_served: int = 0
    crashes: int = 0
    liveness_ticks: int = -1
    workload: dict[str, int] = field(default_factory=dict)
    violation: Violation | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def draw_config(rng: random.Random, seed: int) -> dict[str, Any]:
    """Raft tunables for one seed: features on or off, limits small enough to be exercised. The
    byte limits fit ledger entries (60 to 160 bytes) and snapshots (0.1 to 5 KB): messages of one
    entry (40 bytes), of up to about 8 (1,000) or about 100 (16 KiB); windows of about 15 entries
    (2,500 bytes) or unbounded; snapshots in chunks of 256 bytes (up to 20), 1 KiB or whole."""
    check_quorum = rng.random() < 0.8
    return {
        "election_tick": ELECTION_TICK,
        "heartbeat_tick": rng.choice((1, 1, 2, 3)),
        "pre_vote": rng.random() < 0.8,
        "check_quorum": check_quorum,
        "lease_read": check_quorum and rng.random() < 0.5,
        "max_msg_bytes": rng.choice((40, 1000, 16384)),
        "max_inflight_msgs": rng.choice((1, 4, 64)),
        "max_inflight_bytes": rng.choice((2500, 1 << 20)),
        "snapshot_chunk_bytes": rng.choice((256, 1024, 1 << 20)),
        # From a stream of its own: the draws above, and so the schedules of the seeds
        # recorded before this flag existed, stay as they were.
        "quorum_fanout": random.Random(f"quorum_fanout/{seed}").random() < 0.5,
    }


class _Chaos:
    """Draws and applies the chaos phase's faults and client operations."""

    def __init__(
        self, cluster: SimCluster, rng: random.Random, workload: Workload, membership: bool
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.workload = workload
        self.membership = membership
        self.elections_seen = 0
        self.doomed: dict[str, int] = {}  # node -> tick at which it crashes

    def _churn(self) -> None:
        """Now and then a freshly elected leader crashes a few ticks into its term, after it has
        replicated part of its log: the histories of Figure 8 are made of exactly that."""
        cluster, rng = self.cluster, self.rng
        elections = cluster.stats["elections"]
        if elections != self.elections_seen:
            self.elections_seen = elections
            leader = cluster.leader()
            if leader is not None and rng.random() < 0.3:
                self.doomed[leader.id] = cluster.now + rng.randint(1, 6)
        for node_id, when in list(self.doomed.items()):
            if when <= cluster.now:
                del self.doomed[node_id]
                cluster.crash(node_id)

    def act(self) -> None:
        cluster, rng = self.cluster, self.rng
        self._churn()
        self.workload.act()
        roll = rng.random()
        ids = cluster.ids
        if roll < 0.03:
            victim = believed_leader(cluster, rng) if rng.random() < 0.7 else None
            cluster.crash(victim or rng.choice(ids))
        elif roll < 0.09:
            down = [node_id for node_id in ids if not cluster.nodes[node_id].up]
            if down:
                cluster.restart(rng.choice(down))
        elif len(ids) == 1 and roll < 0.115:
            pass  # a single node has no links to cut
        elif roll < 0.10:
            shuffled = list(ids)
            rng.shuffle(shuffled)
            cut = rng.randrange(1, len(shuffled))
            cluster.partition(shuffled[:cut], shuffled[cut:])
        elif roll < 0.11:
            cluster.isolate(believed_leader(cluster, rng) or rng.choice(ids))
        elif roll < 0.115:
            frm, to = rng.sample(ids, 2)
            cluster.cut(frm, to)
        elif roll < 0.13:
            cluster.heal()
        elif roll < 0.16:
            cluster.compact(rng.choice(ids))
        elif roll < 0.165:
            cluster.transfer(rng.choice(ids))
        elif roll < 0.175:
            self._weather()
        elif self.membership and roll < 0.215:
            self._reconfigure()
        elif 0.215 <= roll < 0.22:  # a connection closed while its peer lives on: a wrong hint
            frm, to = rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
            cluster.hint_lost(frm, to)

    def _reconfigure(self) -> None:
        """Ask the leader for one random membership change: add a non-member as a learner,
        promote a learner, remove a learner, or remove a voter (the leader too) while more than
        MIN_VOTERS remain. A refusal is normal: it is simply drawn again some later tick."""
        cluster, rng = self.cluster, self.rng
        leader = cluster.leader()
        if leader is None:
            return
        conf = leader.core().conf
        options: list[tuple[ConfChangeKind, str]] = []
        options += [(ADD_LEARNER, n) for n in cluster.ids if n not in conf.members]
        options += [(PROMOTE, n) for n in conf.learners] * 4
        options += [(REMOVE, n) for n in conf.learners]
        if len(conf.voters) > MIN_VOTERS:
            options += [(REMOVE, n) for n in conf.voters]
        if options:
            kind, node_id = rng.choice(options)
            cluster.conf_change(kind, node_id)

    def _weather(self) -> None:
        rng = self.rng
        faults = self.cluster.network.faults
        faults.drop_rate = rng.choice((0.0, 0.02, 0.1, 0.3))
        faults.duplicate_rate = rng.choice((0.0, 0.05, 0.2))
        faults.long_delay_rate = rng.choice((0.0, 0.05, 0.2))
        faults.max_delay = rng.choice((1, 2, 4))
        self.cluster.note(
            f"weather drop={faults.drop_rate} dup={faults.duplicate_rate} "
            f"long={faults.long_delay_rate} max_delay={faults.max_delay}"
        )


def _liveness(cluster: SimCluster, options: SimOptions, seed: int) -> int:
    """Heal everything; return the ticks until a leader applies a fresh write."""
    cluster.heal()
    cluster.network.faults = LinkFaults()
    for node_id in cluster.ids:
        cluster.restart(node_id)
    checker = cluster.checker
    marker: tuple[str, int] | None = None  # (leader id, its term) that holds our write
    value = f"live-{seed}"
    progress_tick, best_commit, best_durable = 0, checker.commit_index, 0
    for tick in range(1, options.liveness_bound + 1):
        leader = cluster.leader()
        if leader is not None and marker != (leader.id, leader.core().term):
            term = leader.core().term
            if cluster.put(leader.id, "liveness", value) is not None:
                marker = (leader.id, term)
        cluster.tick()
        if checker.value_at("liveness", checker.commit_index) == value:
            return tick
        durable = sum(node.storage.last_index for node in cluster.nodes.values())
        if checker.commit_index > best_commit or durable > best_durable:
            progress_tick = tick
            best_commit = max(best_commit, checker.commit_index)
            best_durable = max(best_durable, durable)
        elif tick - progress_tick > options.stall_bound:
            raise InvariantViolation(
                "Liveness",
                f"no progress for {options.stall_bound} ticks after healing: commit index "
                f"{best_commit}, leader {leader.id if leader else 'none'}",
            )
    raise InvariantViolation(
        "Liveness", f"the write did not commit within {options.liveness_bound} ticks of healing"
    )


def run_seed(seed: int, options: SimOptions) -> SeedResult:
    started = time.perf_counter()
    rng = random.Random(f"schedule/{seed}")
    size = options.nodes or rng.choice((3, 5))
    config = draw_config(rng, seed)
    disk_latency = rng.choice((0, 1, 3))
    clock_skew_ms = rng.choice((0, 500))
    on_disk = (
        options.disks is not None and options.disk_every > 0 and seed % options.disk_every == 0
    )
    disks = options.disks if on_disk else None
    cluster = SimCluster(
        size,
        seed,
        disk_latency=disk_latency,
        disks=disks,
        clock_every=CLOCK_EVERY,
        clock_skew_ms=clock_skew_ms,
        spares=SPARES if options.membership else 0,
        **config,
    )
    result = SeedResult(
        seed=seed,
        nodes=size,
        config={
            **config,
            "disk_latency": disk_latency,
            "clock_skew_ms": clock_skew_ms,
            "on_disk": on_disk,
        },
    )
    workload = Workload(cluster, rng)
    chaos = _Chaos(cluster, rng, workload, options.membership)
    try:
        for _ in range(options.steps):
            chaos.act()
            cluster.tick()
        result.liveness_ticks = _liveness(cluster, options, seed)
        workload.collect()
        for node in cluster.live():
            cluster.audit(node)
    except InvariantViolation as violation:
        result.violation = Violation(
            seed, violation.invariant, violation.detail, list(cluster.trace)
        )
    except Exception as error:  # a crash of the core or the simulator is a finding too
        result.violation = Violation(
            seed, "Unexpected Error", f"{type(error).__name__}: {error}", list(cluster.trace)
        )
    finally:
        cluster.close()
    stats = cluster.stats
    result.ticks = cluster.now
    result.node_steps = stats["delivered"] + cluster.now * size
    result.elections = stats["elections"]
    result.commits = cluster.checker.commit_index
    result.reads_served = stats["reads_served"]
    result.crashes = stats["crashes"]
    result.workload = {
        **cluster.checker.counts,
        **{name: count for name, count in stats.items() if name.startswith("conf_")},
        "retries": workload.retries,
        "clock_entries": stats["clock_entries"],
    }
    result.seconds = time.perf_counter() - started
    return result

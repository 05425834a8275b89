"""Benchmark of the Raft core alone: no I/O, a perfect network, batched proposals.

Measures, on one core:
  1. entries committed per second through a 3-node cluster of `Raft` objects wired directly
     together (each Ready's messages are stepped into their recipients; persistence is a no-op);
  2. simulator steps per second (node steps, invariant checks included) over seeded schedules;
  3. a baseline measured in the same run: the cost of merely creating the same entries and
     copying them into three logs, so the core's figure can be read as a ratio that does not
     depend on how fast this machine happens to be.

Usage: python benchmarks/core_bench.py [--entries N] [--batch B] [--payload BYTES] [--seeds S]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import deque

from raft_manager.core import Entry, EntryType, Message, Raft, RaftConfig, Role
from raft_manager.sim.runner import run_seeds
from raft_manager.sim.schedule import SimOptions

IDS = ("n1", "n2", "n3")


def _pump(nodes: dict[str, Raft]) -> None:
    """Deliver messages and drain Readies until the cluster is quiet."""
    queue: deque[Message] = deque()
    while True:
        for node in nodes.values():
            if node.has_ready():
                ready = node.ready()
                queue.extend(ready.messages)
                node.advance(ready)
        if not queue:
            return
        while queue:
            msg = queue.popleft()
            nodes[msg.to].step(msg)


def _elect(nodes: dict[str, Raft]) -> Raft:
    for _ in range(1000):
        for node in nodes.values():
            node.tick()
        _pump(nodes)
        leaders = [node for node in nodes.values() if node.role is Role.LEADER]
        if leaders:
            return leaders[0]
    raise RuntimeError("no leader elected")


def core_throughput(entries: int, batch: int, payload: int) -> dict[str, float]:
    config = {"max_msg_bytes": 1 << 20, "max_inflight_msgs": 256}
    nodes = {
        node_id: Raft(RaftConfig(id=node_id, voters=IDS, **config), random.Random(k))
        for k, node_id in enumerate(IDS)
    }
    leader = _elect(nodes)
    data = [bytes(payload)] * batch
    start_commit = leader.log.committed
    started = time.process_time()
    while leader.log.committed - start_commit < entries:
        leader.propose_batch(data)
        _pump(nodes)
    seconds = time.process_time() - started
    committed = leader.log.committed - start_commit
    applied = min(node.log.applied for node in nodes.values()) - start_commit
    return {
        "committed": committed,
        "applied_everywhere": applied,
        "seconds": seconds,
        "entries_per_second": committed / seconds,
    }


def baseline(entries: int, batch: int, payload: int) -> dict[str, float]:
    """The floor: make each entry once and append it to three lists, in the same batches."""
    data = bytes(payload)
    logs: list[list[Entry]] = [[], [], []]
    started = time.process_time()
    index = 0
    while index < entries:
        made = [Entry(index + k + 1, 1, EntryType.NORMAL, data) for k in range(batch)]
        for log in logs:
            log.extend(made)
        index += batch
    seconds = time.process_time() - started
    return {"seconds": seconds, "entries_per_second": index / seconds}


def sim_speed(seeds: int) -> dict[str, float]:
    summary = run_seeds(list(range(seeds)), SimOptions(), workers=1)
    return {
        "seeds": summary.seeds,
        "violations": len(summary.violations),
        "node_steps": summary.node_steps,
        "seconds": summary.seconds,
        "steps_per_second": summary.steps_per_second,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--payload", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    core = core_throughput(args.entries, args.batch, args.payload)
    floor = baseline(args.entries, args.batch, args.payload)
    sim = sim_speed(args.seeds)
    report = {
        "core": core,
        "baseline": floor,
        "core_vs_baseline": core["entries_per_second"] / floor["entries_per_second"],
        "sim": sim,
        "target_entries_per_second": 200_000,
        "target_met": core["entries_per_second"] >= 200_000,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"core: {core['entries_per_second']:,.0f} entries/s committed "
        f"({core['committed']:,} entries, batch {args.batch}, {args.payload} B, 3 nodes, one core)"
    )
    print(f"baseline (make + copy into 3 logs): {floor['entries_per_second']:,.0f} entries/s")
    print(f"core / baseline: {report['core_vs_baseline']:.3f}")
    print(
        f"simulator: {sim['steps_per_second']:,.0f} node steps/s over {sim['seeds']} seeds "
        f"({sim['violations']} violations)"
    )
    print(f"target >= 200,000 entries/s: {'met' if report['target_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Membership changes in the simulator: seeded scenarios (grow 3 -> 5 -> 3 under load, remove the
leader, add a node across a partition) and a sweep of random changes mixed with every fault.
The invariant checker runs inside every step: a violation raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scenario_helpers import memory, run_until, stable_leader
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.core import Raft, Role
from raft_manager.core.membership import ConfChange, ConfChangeKind
from raft_manager.core.quorum import quorum_value
from raft_manager.sim.cluster import SimCluster
from raft_manager.sim.runner import run_seeds
from raft_manager.sim.schedule import SimOptions
from raft_manager.storage.scratch import ScratchDisks

ADD_LEARNER, PROMOTE = ConfChangeKind.ADD_LEARNER, ConfChangeKind.PROMOTE
REMOVE = ConfChangeKind.REMOVE


class Load:
    """A client that puts a fresh value through the leader on every tick it is asked to."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.count = 0

    def tick(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            leader = self.cluster.leader()
            if leader is not None:
                self.count += 1
                self.cluster.put(leader.id, f"k{self.count % 7}", f"v{self.count}")
            self.cluster.tick()


def change(cluster: SimCluster, load: Load, kind: ConfChangeKind, node_id: str) -> int:
    """Propose the change through whoever leads, again on every tick until it is taken, then
    run under load until its entry is committed; returns its index."""
    for _ in range(300):
        index = cluster.conf_change(kind, node_id)
        if index is not None:
            leader = cluster.leader()
            assert leader is not None
            term = leader.core().term
            for _ in range(100):
                raft = leader.raft
                if raft is not None and raft.term == term and raft.log.committed >= index:
                    return index
                load.tick()
            # the proposing leader lost its term before the change committed: try again
            continue
        load.tick()
    raise AssertionError(f"{kind.value} {node_id} never committed; trace {cluster.trace}")


def voters(cluster: SimCluster) -> tuple[str, ...]:
    leader = stable_leader(cluster)
    return leader.core().conf.voters


def settle(cluster: SimCluster, load: Load, node_ids: tuple[str, ...]) -> None:
    """Stop the load and let every node in `node_ids` apply the leader's whole log."""
    leader = stable_leader(cluster)
    index = cluster.put(leader.id, "settle", "done")
    assert index is not None
    run_until(cluster, lambda: all(cluster.nodes[n].applied >= index for n in node_ids), 300)
    reference = memory(cluster.nodes[node_ids[0]])
    for node_id in node_ids:
        assert memory(cluster.nodes[node_id]) == reference


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grow_three_to_five_and_back_to_three_under_load(seed: int) -> None:
    cluster = SimCluster(3, seed, spares=2, disk_latency=1, clock_every=10)
    load = Load(cluster)
    stable_leader(cluster)
    for spare in ("n4", "n5"):
        change(cluster, load, ADD_LEARNER, spare)
        load.tick(20)  # the learner catches up under load
        change(cluster, load, PROMOTE, spare)
    assert voters(cluster) == ("n1", "n2", "n3", "n4", "n5")
    # Five voters: two of the original three may crash and writes still commit.
    leader = stable_leader(cluster)
    others = [n for n in ("n1", "n2", "n3") if n != leader.id]
    for node_id in others:
        cluster.crash(node_id)
    before = cluster.checker.commit_index
    load.tick(30)
    assert cluster.checker.commit_index > before + 10
    for node_id in others:
        cluster.restart(node_id)
    load.tick(20)
    for spare in ("n4", "n5"):
        change(cluster, load, REMOVE, spare)
        load.tick(10)
    assert voters(cluster) == ("n1", "n2", "n3")
    settle(cluster, load, ("n1", "n2", "n3"))
    # Back at three: the removed nodes may go; a majority of the three commits alone.
    cluster.crash("n4")
    cluster.crash("n5")
    before = cluster.checker.commit_index
    load.tick(30)
    assert cluster.checker.commit_index > before + 10
    assert load.count > 150


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_removing_the_leader_hands_over_and_the_rest_go_on(seed: int) -> None:
    cluster = SimCluster(5, seed, disk_latency=1, clock_every=10, pre_vote=True, check_quorum=True)
    load = Load(cluster)
    old = stable_leader(cluster)
    load.tick(10)
    old_term = old.core().term
    change(cluster, load, REMOVE, old.id)
    run_until(
        cluster,
        lambda: (leader := cluster.leader()) is not None and leader.id != old.id,
        100,
    )
    assert old.core().role is Role.FOLLOWER
    rest = tuple(n for n in cluster.ids if n != old.id)
    assert voters(cluster) == rest
    new_leader = stable_leader(cluster)
    assert new_leader.core().term > old_term
    load.tick(50)
    settle(cluster, load, rest)
    # The removed node, left running, does not disturb the four; crashed, it is not missed.
    assert stable_leader(cluster).id == new_leader.id
    cluster.crash(old.id)
    cluster.crash(rest[0] if rest[0] != new_leader.id else rest[1])
    before = cluster.checker.commit_index
    load.tick(30)
    assert cluster.checker.commit_index > before + 10  # 3 of the 4 remaining voters


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_adding_a_node_while_the_network_is_partitioned(seed: int) -> None:
    cluster = SimCluster(5, seed, spares=1, disk_latency=1, clock_every=10)
    load = Load(cluster)
    leader = stable_leader(cluster)
    load.tick(10)
    # 1. The leader and the new node n6 are cut off from the other four: the leader takes the
    # change into its log, but it cannot commit; the majority elects a leader that overwrites it.
    majority = [n for n in cluster.ids[:5] if n != leader.id]
    cluster.partition([leader.id, "n6"], majority)
    index = leader.core().propose_conf_change(ConfChange(ADD_LEARNER, "n6"))
    cluster.process(leader)
    assert "n6" in leader.core().conf.learners
    load.tick(60)
    assert leader.core().log.committed < index
    new_leader = stable_leader(cluster)
    assert new_leader.id in majority
    cluster.heal()
    run_until(cluster, lambda: "n6" not in cluster.nodes[leader.id].core().conf.members, 100)
    # 2. n6 is added (and promoted) through the majority side of another partition.
    second = stable_leader(cluster)
    minority = [n for n in cluster.ids[:5] if n != second.id][:2]
    cluster.partition([n for n in cluster.ids if n not in minority], minority)
    load.tick(5)
    change(cluster, load, ADD_LEARNER, "n6")
    load.tick(20)
    change(cluster, load, PROMOTE, "n6")
    assert voters(cluster) == ("n1", "n2", "n3", "n4", "n5", "n6")
    cluster.heal()
    load.tick(20)
    settle(cluster, load, cluster.ids)


def test_cli_runs_membership_changes() -> None:
    outcome = CliRunner().invoke(app, ["sim", "--seeds", "10", "--membership", "--json"])
    assert outcome.exit_code == 0, outcome.stdout
    report = json.loads(outcome.stdout)
    assert report["violations"] == []
    assert report["workload"]["conf_proposed.add_learner"] > 0


def test_random_membership_changes_with_every_fault() -> None:
    summary = run_seeds(list(range(300)), SimOptions(membership=True), workers=2)
    assert [(v.seed, v.invariant, v.detail) for v in summary.violations] == []
    done = summary.workload
    for count in (
        "conf.add_learner",  # committed changes of each kind
        "conf.promote",
        "conf.remove",
        "conf_proposed.remove_leader",
        "conf_changes_refused",
    ):
        assert done.get(count, 0) > 0, count


@pytest.mark.slow
def test_sweep_of_membership_changes_finds_no_violation(tmp_path: Path) -> None:
    options = SimOptions(membership=True, disks=ScratchDisks(tmp_path), disk_every=10)
    summary = run_seeds(list(range(10_000, 11_000)), options, workers=2)
    assert summary.seeds == 1000
    assert [(v.seed, v.invariant, v.detail) for v in summary.violations] == []
    assert summary.workload["conf.promote"] > 50


def test_a_leader_that_counts_learners_toward_its_quorum_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Commit what a majority of voters *and learners* hold: the voters' majority may not.
    def careless_commit(self: Raft) -> None:
        index = quorum_value([self.progress[peer].match for peer in self.conf.members])
        if self.log.maybe_commit(index, self.term):
            self._broadcast_commit = True

    monkeypatch.setattr(Raft, "_maybe_commit", careless_commit)
    summary = run_seeds(list(range(60)), SimOptions(membership=True), workers=1)
    assert {v.invariant for v in summary.violations} == {"Commit Durability"}

"""The simulator itself: determinism, the CLI contract, that it finds bugs, and the CI sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.core import RestoredState
from raft_manager.core.log import RaftLog
from raft_manager.ledger.sessions import SessionTable
from raft_manager.ledger.tasks import Emit, TaskBook
from raft_manager.sim.runner import run_seeds
from raft_manager.sim.schedule import SimOptions, run_seed
from raft_manager.storage.file import FileStorage
from raft_manager.storage.scratch import ScratchDisks


def _comparable(seed: int, options: SimOptions) -> dict[str, object]:
    result = run_seed(seed, options).to_json()
    result.pop("seconds")
    return result


def test_a_seed_replays_exactly_in_process() -> None:
    options = SimOptions(steps=150)
    for seed in (1, 2, 3):
        assert _comparable(seed, options) == _comparable(seed, options)


def test_a_seed_replays_exactly_across_processes_and_hash_seeds() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        completed = subprocess.run(
            [sys.executable, "-m", "raft_manager.cli", "sim", "--seed", "11", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result = json.loads(completed.stdout)["result"]
        result.pop("seconds")
        outputs.append(result)
    assert outputs[0] == outputs[1]
    assert outputs[0]["commits"] > 0


def test_cli_json_reports_seeds_and_violations() -> None:
    outcome = CliRunner().invoke(app, ["sim", "--seeds", "5", "--workers", "1", "--json"])
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.stdout)
    assert report["seeds"] == 5
    assert report["violations"] == []
    assert report["elections"] > 0 and report["commits"] > 0
    assert report["steps_per_second"] > 0
    assert report["workload"]["task.claim"] > 0


def test_cli_rejects_bad_arguments() -> None:
    outcome = CliRunner().invoke(app, ["sim", "--seeds", "0"])
    assert outcome.exit_code == 2
    outcome = CliRunner().invoke(app, ["sim", "--nodes", "9"])
    assert outcome.exit_code == 2


def test_a_broken_election_restriction_is_caught_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Grant votes regardless of how up to date the candidate is: Leader Completeness must fail.
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    outcome = CliRunner().invoke(app, ["sim", "--seeds", "30", "--workers", "1"])
    assert outcome.exit_code == 1
    assert "VIOLATION seed" in outcome.stdout
    assert "Leader Completeness" in outcome.stdout
    assert "raft-manager sim --seed" in outcome.stdout


def test_a_broken_read_index_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Answer ReadIndex without confirming leadership: a deposed leader serves stale reads.
    from raft_manager.core.raft import Raft

    def careless_read(self: Raft, context: bytes, requester: str | None) -> None:
        self._answer_read(context, self.log.committed, requester)

    monkeypatch.setattr(Raft, "_leader_read", careless_read)
    summary = run_seeds(list(range(300)), SimOptions(), workers=1)
    assert {v.invariant for v in summary.violations} == {"Linearizable Read"}


def test_the_swarm_workload_claims_completes_and_expires_leases() -> None:
    summary = run_seeds(list(range(60)), SimOptions(), workers=1)
    assert [(v.seed, v.invariant, v.detail) for v in summary.violations] == []
    done = summary.workload
    for count in (
        "submits_acknowledged",
        "task.claim",
        "task.renew",
        "task.complete",
        "task.fail",
        "leases_expired",  # a task claimed again after its holder's lease ran out
        "stale_holders_refused",  # a late renew / complete / fail from a former holder
        "retries_deduplicated",  # a second copy of a request, answered from the session record
        "retries_refused_stale",  # a second copy arriving after the client moved on
        "clock_entries",
    ):
        assert done.get(count, 0) > 0, count


def test_a_ledger_that_hands_a_held_task_to_another_agent_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before each claim, take every task another agent holds back to the queue, lease or not.
    real_claim = TaskBook.claim

    def greedy_claim(
        self: TaskBook, cmd: dict[str, Any], index: int, now: int, emit: Emit
    ) -> dict[str, Any]:
        holders = {t.agent for t in self.tasks.values() if t.state == "claimed"} - {cmd["agent"]}
        for holder in sorted(h for h in holders if h is not None):
            self.release_agent(holder, "taken over", now, emit)
        return real_claim(self, cmd, index, now, emit)

    monkeypatch.setattr(TaskBook, "claim", greedy_claim)
    summary = run_seeds(list(range(30)), SimOptions(), workers=1)
    assert {v.invariant for v in summary.violations} == {"Lease Exclusion"}


def test_a_session_table_that_applies_retries_again_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_recall = SessionTable.recall

    def forgetful_recall(self: SessionTable, session_id: str, seq: int, ack: int, now: int) -> Any:
        real_recall(self, session_id, seq, ack, now)
        return None  # never answer from the record: a retried command runs again

    monkeypatch.setattr(SessionTable, "recall", forgetful_recall)
    summary = run_seeds(list(range(30)), SimOptions(), workers=1)
    assert "Exactly Once" in {v.invariant for v in summary.violations}


def test_a_snapshot_that_loses_a_task_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real_dump = TaskBook.dump
    monkeypatch.setattr(TaskBook, "dump", lambda self: real_dump(self)[:-1])
    summary = run_seeds(list(range(30)), SimOptions(), workers=1)
    assert "Acknowledged Submit" in {v.invariant for v in summary.violations}


def test_nodes_restart_from_real_files_and_recover_what_was_persisted(tmp_path: Path) -> None:
    options = SimOptions(disks=ScratchDisks(tmp_path), disk_every=1)
    summary = run_seeds(list(range(60)), options, workers=1)
    assert [(v.seed, v.invariant, v.detail) for v in summary.violations] == []
    assert summary.crashes > 100  # every crash is a reopen of the files, checked against the model
    assert list(tmp_path.iterdir()) == []  # each seed's files were removed


def test_a_disk_that_forgets_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A storage that silently loses its newest record on reopen breaks Durability.
    real_load = FileStorage.load

    def forgetful_load(self: FileStorage) -> RestoredState:
        restored = real_load(self)
        return restored._replace(entries=restored.entries[:-1])

    monkeypatch.setattr(FileStorage, "load", forgetful_load)
    options = SimOptions(disks=ScratchDisks(tmp_path), disk_every=1)
    summary = run_seeds(list(range(20)), options, workers=1)
    assert "Durability" in {v.invariant for v in summary.violations}


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_sweep_of_seeded_fault_schedules_finds_no_violation(nodes: int, tmp_path: Path) -> None:
    options = SimOptions(nodes=nodes, disks=ScratchDisks(tmp_path), disk_every=10)
    summary = run_seeds(list(range(1000 * nodes, 1000 * nodes + 1000)), options, workers=2)
    assert summary.seeds == 1000
    assert [(v.seed, v.invariant, v.detail) for v in summary.violations] == []
    assert summary.elections > 1000
    assert summary.commits > 10_000

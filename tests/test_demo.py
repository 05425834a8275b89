"""`raft-manager demo`: the README's main command, run as a user runs it (a real cluster of node
processes, real agents, a real SIGKILL of the leader)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raft_manager.cli.demo_swarm import PIPELINES, STAGES, plan_tasks


def _demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raft_manager.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_task_graph_is_a_dag_submitted_in_dependency_order() -> None:
    planned = plan_tasks()
    assert len(planned) == PIPELINES * len(STAGES) == 40
    seen: set[str] = set()
    for task in planned:
        assert set(task.depends_on) <= seen, f"{task.id} comes before a dependency"
        seen.add(task.id)
    assert any(len(task.depends_on) > 1 for task in planned)  # fan-in, not only chains


@pytest.mark.slow
def test_demo_survives_a_leader_kill_and_every_task_completes_exactly_once(
    tmp_path: Path,
) -> None:
    run = _demo("--json", "--dir", str(tmp_path / "demo"))
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["ok"] and summary["problems"] == []
    assert summary["done"] == summary["tasks"] == 40
    assert summary["accepted_completions"] == 40 and summary["exactly_once"]
    assert summary["killed_leader"] != summary["new_leader"] is not None
    old_term, new_term = summary["terms"]
    assert new_term > old_term
    assert summary["post_hook_exit"] == 0
    assert "post: ok" in run.stderr  # the hook's checks were shown as they ran
    assert not (tmp_path / "demo" / "pids.json").exists()  # stopped without --keep


def test_demo_refuses_a_folder_that_holds_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text('cluster_id = "x"\n')
    run = _demo("--dir", str(tmp_path))
    assert run.returncode == 2
    assert "already holds a cluster" in run.stderr

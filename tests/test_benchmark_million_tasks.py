"""benchmarks/million_tasks.py, scaled down: the tasks all go through their whole cycle (more
than the 10,000 finished tasks a ledger keeps, so forgetting runs on every node), the nodes'
states agree, and both restarted nodes (a follower, then the leader) serve again. The figures
themselves (RSS, restart seconds) are the benchmark's to report, not this test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "million_tasks.py"


@pytest.mark.slow
def test_the_million_task_benchmark_runs_every_task_and_restarts_both_nodes() -> None:
    argv = [sys.executable, str(SCRIPT), "--tasks", "12000", "--workers", "200", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=True)
    report = json.loads(done.stdout)
    assert report["submitted"] == report["completed"] == 12_000
    assert report["empty_claims"] == 0
    assert report["digests_agree"] is True
    assert set(report["restart_s"]) == {"follower", "leader"}
    assert all(seconds is not None for seconds in report["restart_s"].values())
    assert set(report["peak_rss_mb"]) == {"n1", "n2", "n3"}

"""server/collector.py: what start-up built is frozen out of the collector's scans, and the
young generation grows to YOUNG_THRESHOLD objects between collections. Run in a child process:
the test process's own collector is left as it is."""

from __future__ import annotations

import json
import subprocess
import sys

from raft_manager.server.collector import OLDER_THRESHOLDS, YOUNG_THRESHOLD

PROBE = """
import gc, json
from raft_manager.server.collector import tune_collector
before = gc.get_freeze_count()
tune_collector()
after, threshold = gc.get_freeze_count(), gc.get_threshold()
print(json.dumps({"before": before, "after": after, "threshold": threshold}))
"""


def test_tuning_freezes_what_start_up_built_and_raises_the_thresholds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(done.stdout)
    assert seen["before"] == 0 and seen["after"] > 1000  # the modules' objects, at least
    assert seen["threshold"] == [YOUNG_THRESHOLD, *OLDER_THRESHOLDS]

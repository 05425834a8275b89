"""`raft-manager verify` and the hooks against real clusters of node processes: consistent
under writes and compaction, a log diverged on disk, a cluster that is down, and task texts
full of shell metacharacters that must run nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cluster_helpers import IDS, Cluster, converged, leader_elected
from typer.testing import CliRunner, Result

from raft_manager.cli.main import app
from raft_manager.client import ClientError, SyncRaftClient
from raft_manager.core import Entry
from raft_manager.storage import FileStorage
from raft_manager.transport.client_protocol import Request

REPOSITORY = Path(__file__).resolve().parent.parent
HOOKS = REPOSITORY / "hooks"
RAFT_MANAGER = Path(sys.executable).with_name("raft-manager")


def cli(config: Path, *args: str, code: int, stdin: str | None = None) -> Result:
    outcome = CliRunner().invoke(
        app, [*args, "--cluster", str(config)], input=stdin, env={"TASK": ""}
    )
    assert outcome.exit_code == code, (outcome.exit_code, outcome.output)
    return outcome


def start(cluster: Cluster) -> None:
    for node in IDS:
        cluster.start(node)

    async def elected() -> None:
        async with cluster.client() as client:
            await leader_elected(client, cluster)

    anyio.run(elected)


def put_all(cluster: Cluster, count: int) -> None:
    addresses = [cluster.client_addresses[node] for node in IDS]
    with SyncRaftClient(addresses) as client:
        for k in range(count):
            client.command({"op": "memory.put", "key": f"k{k}", "value": k})


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster that compacts every 100 entries, after 250 writes."""
    cluster = Cluster(tmp_path_factory.mktemp("verify"), settings=("snapshot_every = 100",))
    try:
        start(cluster)
        put_all(cluster, 250)
        yield cluster
    finally:
        cluster.stop_all()


class Writer(threading.Thread):
    """Writes until stopped, so a check runs while the log moves."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.addresses = [cluster.client_addresses[node] for node in IDS]
        self.stopping = threading.Event()
        self.written = 0

    def run(self) -> None:
        with SyncRaftClient(self.addresses) as client:
            while not self.stopping.is_set():
                client.command({"op": "memory.put", "key": "moving", "value": self.written})
                self.written += 1

    def __enter__(self) -> Writer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join(timeout=10)


def test_verify_json_on_a_consistent_cluster_under_writes(healthy: Cluster) -> None:
    with Writer(healthy) as writer:
        report = json.loads(cli(healthy.config, "verify", "--json", code=0).stdout)
    assert writer.written > 0
    assert report["consistent"] is True and report["exit_code"] == 0
    nodes = {node["id"]: node for node in report["nodes"]}
    assert set(nodes) == set(IDS) and all(node["reachable"] for node in nodes.values())
    assert all(node["snapshot_index"] >= 100 for node in nodes.values())  # compacted
    log = report["log"]
    assert log["from"] == max(node["snapshot_index"] for node in nodes.values())
    assert log["to"] >= 250 and log["compared"] == log["to"] - log["from"] + 1
    assert log["divergence"] is None
    state = report["state"]
    assert state["compared"] is True and state["checkpoint"] > log["to"]
    assert len(set(state["digests"].values())) == 1 and set(state["digests"]) == set(IDS)


def test_the_hooks_pass_on_a_healthy_cluster(healthy: Cluster) -> None:
    pre = cli(healthy.config, "hooks", "check", "pre", "--task", "Leader election drill", code=0)
    lines = pre.stdout.splitlines()
    assert lines[0].startswith("ok   leader n") and ", term " in lines[0]
    assert lines[1] == "ok   quorum: 3 of 3 voters answer"
    assert lines[2].startswith("ok   no node lags more than 1,000 entries behind commit")
    assert lines[3].startswith("ok   transfer target n")
    task = {"tool_input": {"prompt": "check log replication after the election"}}
    with Writer(healthy):
        post = cli(
            healthy.config, "hooks", "check", "post", "--json", code=0, stdin=json.dumps(task)
        )
    document = json.loads(post.stdout)
    assert document["election"] and document["replication"]
    texts = [check["text"] for check in document["checks"]]
    assert [check["verdict"] for check in document["checks"]] == ["ok"] * 4, texts
    assert texts[0].startswith("log: entries") and texts[1].startswith("state: digests agree")
    assert texts[2].startswith("single leader n") and texts[3].startswith("caught up to")
    plain = cli(healthy.config, "hooks", "check", "pre", code=0)  # no task: no election check
    assert len(plain.stdout.splitlines()) == 3


def run_script(
    phase: str, config: Path, cwd: Path, *, task: str | None = None, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "RAFT_MANAGER_BIN": str(RAFT_MANAGER), **env}
    environment["RAFT_MANAGER_CLUSTER"] = str(config)
    if task is not None:
        environment["TASK"] = task
    return subprocess.run(
        [str(HOOKS / phase)],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def hostile(markers: Path) -> str:
    """A task text that runs commands if anything ever hands it to a shell."""
    touch = [f"touch {markers / name}" for name in ("a", "b", "c", "d", "e")]
    return (
        f"election $({touch[0]}) `{touch[1]}`; {touch[2]} && replicate\n{touch[3]}\n"
        f"' \"; {touch[4]} #"
    )


def no_markers(markers: Path) -> None:
    assert list(markers.iterdir()) == []


def test_a_task_full_of_shell_metacharacters_runs_nothing(healthy: Cluster, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    task = hostile(markers)
    by_env = run_script("pre", healthy.config, tmp_path, task=task)
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    assert "transfer target" in by_env.stdout  # the text was read: it mentions an election
    payload = json.dumps({"hook_event_name": "PostToolUse", "tool_input": {"prompt": task}})
    by_stdin = run_script("post", healthy.config, tmp_path, stdin=payload)
    assert by_stdin.returncode == 0, by_stdin.stdout + by_stdin.stderr
    assert "single leader" in by_stdin.stdout and "caught up" in by_stdin.stdout
    by_option = cli(healthy.config, "hooks", "run", "pre", "--task", task, code=0)
    assert "transfer target" in by_option.stdout
    no_markers(markers)


def test_verify_and_the_hooks_exit_2_when_the_cluster_is_down(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)  # written, never started
    markers = tmp_path / "markers"
    markers.mkdir()
    down = cli(cluster.config, "verify", code=2)
    assert down.stdout.splitlines()[0] == "FAIL cluster unreachable: no node answers"
    assert all(f"skip {node} unreachable" in down.stdout for node in IDS)
    assert json.loads(cli(cluster.config, "verify", "--json", code=2).stdout)["consistent"] is None
    pre = cli(cluster.config, "hooks", "check", "pre", "--task", hostile(markers), code=2)
    assert pre.stdout == "FAIL cluster unreachable: none of n1, n2, n3 answers\n"
    post = run_script("post", cluster.config, tmp_path, task=hostile(markers))
    assert post.returncode == 2 and "cluster unreachable" in post.stdout
    no_markers(markers)


def test_unusable_hook_input_exits_2_before_anything_is_asked(tmp_path: Path) -> None:
    bad = cli(tmp_path / "none.toml", "hooks", "check", "pre", code=2, stdin="run $(reboot)")
    assert "error: hook input: stdin is not a hook's JSON payload" in bad.output


def test_a_malformed_log_request_is_refused_by_id_and_changes_nothing(healthy: Cluster) -> None:
    address = healthy.client_addresses["n1"]

    async def ask() -> tuple[ClientError, dict[str, Any], dict[str, Any]]:
        async with healthy.client() as client:
            before = await client.log(address, 0, 0)
            with pytest.raises(ClientError) as refused:
                await client._ask(address, Request(999, "log", start=-5, count=1))
            with pytest.raises(ClientError):
                await client._ask(address, Request(998, "digest", index=0))
            after = await client.log(address, 0, 0)  # the same connection still serves
            return refused.value, before, after

    refused, before, after = anyio.run(ask)
    assert refused.code == "bad_request" and "from" in str(refused)
    assert after["first_index"] == before["first_index"]
    assert after["commit_index"] >= before["commit_index"]


def rewrite_entry(data_dir: Path, key: str) -> int:
    """Give the committed `memory.put` of `key` another value in a stopped node's WAL, through
    the storage API (same index and term, valid checksums); returns its index."""
    storage = FileStorage(data_dir)
    try:
        entries = storage.load().entries
        for position, entry in enumerate(entries):
            if entry.data.startswith(b"{") and json.loads(entry.data)["c"].get("key") == key:
                envelope = json.loads(entry.data)
                envelope["c"]["value"] = "tampered"
                forged = Entry(entry.index, entry.term, entry.type, json.dumps(envelope).encode())
                storage.save(None, [forged, *entries[position + 1 :]], None)
                return entry.index
        raise AssertionError(f"no memory.put of {key} in {data_dir}")
    finally:
        storage.close()


def test_post_fails_naming_the_first_divergent_index(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        start(cluster)
        put_all(cluster, 20)

        async def settled() -> None:
            async with cluster.client() as client:
                await converged(client, cluster, IDS)

        anyio.run(settled)
        cluster.stop("n3")
        partial = cli(cluster.config, "verify", code=0)  # the others are checked
        assert "skip n3 unreachable, not checked" in partial.stdout
        assert "agree on n1, n2" in partial.stdout
        index = rewrite_entry(tmp_path / "data" / "n3", "k5")
        cluster.start("n3")
        anyio.run(settled)  # n3 answers again, caught up
        post = cli(cluster.config, "hooks", "check", "post", "--task", "log replication", code=1)
        assert f"FAIL log: entry {index:,} differs: n1, n2 hold term" in post.stdout
        assert "; n3 holds term" in post.stdout
        assert "FAIL state: digests differ at checkpoint" in post.stdout
        report = json.loads(cli(cluster.config, "verify", "--json", code=1).stdout)
        divergence = report["log"]["divergence"]
        assert divergence["index"] == index
        assert [holder["nodes"] for holder in divergence["holders"]] == [["n1", "n2"], ["n3"]]
        assert report["state"]["divergence"][1]["nodes"] == ["n3"]
    finally:
        cluster.stop_all()


def test_hooks_run_kills_a_hook_that_outlives_its_timeout(tmp_path: Path) -> None:
    (tmp_path / "pre").write_text(
        '#!/bin/sh\necho started\nsleep 30 &\necho $! > "$(dirname "$0")/child"\nwait\n'
    )
    (tmp_path / "pre").chmod(0o755)
    outcome = CliRunner().invoke(
        app, ["hooks", "run", "pre", "--dir", str(tmp_path), "--timeout", "0.5"]
    )
    assert outcome.exit_code == 2
    assert outcome.stdout == "started\n"
    assert "hook pre did not finish within 0.5 s: killed" in outcome.stderr
    child = int((tmp_path / "child").read_text())
    assert not _running(child)  # its child was in its process group: killed too
    missing = CliRunner().invoke(app, ["hooks", "run", "post", "--dir", str(tmp_path)])
    assert missing.exit_code == 2 and "no executable hook" in missing.stderr
    (tmp_path / "post").write_text("#!/bin/sh\necho done\necho why >&2\nexit 3\n")
    (tmp_path / "post").chmod(0o755)
    as_json = CliRunner().invoke(app, ["hooks", "run", "post", "--dir", str(tmp_path), "--json"])
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout) == {
        "phase": "post",
        "exit_code": 3,
        "output": "done\n",
        "errors": "why\n",
    }


def test_hooks_run_passes_the_task_in_the_environment_only(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "post").write_text(
        '#!/bin/sh\nprintf %s "$TASK" > "$(dirname "$0")/seen"\nexit 1\n'
    )
    (tmp_path / "post").chmod(0o755)
    task = hostile(markers)
    outcome = CliRunner().invoke(
        app, ["hooks", "run", "post", "--dir", str(tmp_path), "--task", task]
    )
    assert outcome.exit_code == 1  # the hook's own exit code
    assert (tmp_path / "seen").read_text() == task
    no_markers(markers)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a reparented child may wait a moment to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")

"""The ledger commands (task, agent, memory, decision) against one real 3-node cluster."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import Cluster, running_cluster
from conftest import free_port
from typer.testing import CliRunner, Result

from raft_manager.cli.main import app
from raft_manager.client import SyncRaftClient
from raft_manager.ledger.commands import TaskSubmit


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("ledger-cli")) as running:
        yield running


class Cli:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> Result:
        outcome = self.runner.invoke(app, [*args, "--cluster", str(self.config)])
        assert outcome.exit_code == code, (outcome.exit_code, outcome.output)
        return outcome

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


@pytest.fixture
def cli(cluster: Cluster) -> Cli:
    return Cli(cluster.config)


def test_submit_claim_renew_complete(cli: Cli) -> None:
    submitted = cli.json("task", "submit", '{"n": 1}', "--queue", "trip", "--priority", "5")
    assert submitted == {"task_id": submitted["task_id"], "state": "pending", "existing": False}
    task_id = submitted["task_id"]
    claimed = cli.json("task", "claim", "--agent", "w1", "--queue", "trip", "--lease", "60")
    assert set(claimed) == {
        "task_id",
        "payload",
        "queue",
        "fencing_token",
        "lease_until",
        "attempt",
    }
    assert (claimed["task_id"], claimed["payload"], claimed["attempt"]) == (task_id, {"n": 1}, 1)
    held = [task_id, "--agent", "w1", "--token", str(claimed["fencing_token"])]
    renewed = cli.json("task", "renew", *held, "--lease", "90")
    assert renewed["lease_until"] >= claimed["lease_until"]
    done = cli.json("task", "complete", *held, "--result", '{"answer": 42}')
    assert done == {"task_id": task_id, "state": "done"}
    task = cli.json("task", "get", task_id)
    assert (task["state"], task["result"], task["agent"]) == ("done", {"answer": 42}, "w1")
    assert [t["id"] for t in cli.json("task", "list", "--queue", "trip", "--stale")] == [task_id]
    human = cli("task", "submit", '"text"', "--id", "human-1", "--queue", "trip")
    assert "human-1: pending" in human.stdout


def test_claim_exits_3_when_nothing_is_claimable_and_wait_picks_up_a_later_task(
    cli: Cli, cluster: Cluster
) -> None:
    assert cli.json("task", "claim", "--agent", "w2", "--queue", "later", code=3) == {
        "task_id": None
    }
    started = time.monotonic()
    cli("task", "claim", "--agent", "w2", "--queue", "later", "--wait", "0.5", code=3)
    assert time.monotonic() - started >= 0.5  # it kept trying for the whole wait

    def submit_later() -> None:
        time.sleep(0.5)
        with SyncRaftClient(list(cluster.client_addresses.values())) as client:
            client.command(TaskSubmit(queue="later", payload="late"))

    submitter = threading.Thread(target=submit_later)
    submitter.start()
    started = time.monotonic()
    claimed = cli.json(
        "task", "claim", "--agent", "w2", "--queue", "later", "--wait", "10", "--lease", "600"
    )
    submitter.join()
    assert claimed["payload"] == "late"
    assert time.monotonic() - started < 5


def test_a_stale_token_is_refused_with_exit_1_and_its_code(cli: Cli) -> None:
    task_id = cli.json("task", "submit", "{}", "--queue", "stale")["task_id"]
    token = cli.json("task", "claim", "--agent", "w3", "--queue", "stale")["fencing_token"]
    stale = cli("task", "complete", task_id, "--agent", "w3", "--token", str(token + 1), code=1)
    assert "stale_token" in stale.stderr
    other = cli("task", "fail", task_id, "--agent", "w4", "--token", str(token), code=1)
    assert "stale_token" in other.stderr
    failed = cli.json("task", "fail", task_id, "--agent", "w3", "--token", str(token))
    assert failed == {"task_id": task_id, "state": "pending", "attempts": 1}
    assert cli.json("task", "cancel", task_id) == {"task_id": task_id, "state": "cancelled"}
    assert "not_found" in cli("task", "get", "no-such-task", code=1).stderr


def test_bad_input_is_exit_2_and_submits_nothing(cli: Cli) -> None:
    assert "PAYLOAD" in cli("task", "submit", "{bad", "--queue", "bad", code=2).output
    assert "invalid_command" in cli("task", "submit", "1", "--id", "a b", code=2).stderr
    too_high = cli("task", "submit", "1", "--queue", "bad", "--priority", "2000000", code=2)
    assert "priority" in too_high.stderr
    assert cli.json("task", "list", "--queue", "bad") == []


def test_memory_put_get_cas_delete(cli: Cli) -> None:
    put = cli.json("memory", "put", "plan", '{"step": 1}', "--namespace", "m")
    assert put == {"version": put["version"], "expires_at": None}
    item = cli.json("memory", "get", "plan", "--namespace", "m")
    assert (item["value"], item["version"]) == ({"step": 1}, put["version"])
    swapped = cli.json(
        "memory", "cas", "plan", '{"step": 2}', "--expected", '{"step": 1}', "--namespace", "m"
    )
    assert swapped["version"] > put["version"]
    lost = cli(
        "memory", "cas", "plan", "3", "--expected", '{"step": 1}', "--namespace", "m", code=1
    )
    assert "cas_failed" in lost.stderr
    by_version = ["--expected-version", str(swapped["version"]), "--namespace", "m"]
    assert cli.json("memory", "cas", "plan", "3", *by_version)["version"] > swapped["version"]
    assert cli("memory", "cas", "plan", "4", code=2).stderr.startswith("error: give exactly one")
    assert [i["key"] for i in cli.json("memory", "list", "--prefix", "pl", "--namespace", "m")] == [
        "plan"
    ]
    assert cli.json("memory", "delete", "plan", "--namespace", "m") == {"existed": True}
    assert cli.json("memory", "get", "plan", "--namespace", "m", code=3) is None
    assert "no key plan" in cli("memory", "get", "plan", "--namespace", "m", code=3).stdout


def test_decision_propose_vote_get_list(cli: Cli) -> None:
    voters = ["--voter", "a", "--voter", "b", "--voter", "c"]
    proposed = cli.json("decision", "propose", "Ship it?", *voters, "--id", "ship")
    assert (proposed["decision_id"], proposed["voters"]) == ("ship", ["a", "b", "c"])
    first = cli.json("decision", "vote", "ship", "approve", "--voter", "a", "--reason", "tested")
    assert first == {"decision_id": "ship", "state": "open"}
    assert cli.json("decision", "vote", "ship", "approve", "--voter", "b")["state"] == "approved"
    assert "closed" in cli("decision", "vote", "ship", "reject", "--voter", "c", code=1).stderr
    decision = cli.json("decision", "get", "ship")
    assert (decision["state"], decision["winner"]) == ("approved", "approve")
    assert decision["counts"] == {"approve": 2, "reject": 0}
    assert [vote["reason"] for vote in decision["votes"]] == ["tested", ""]
    assert "ship" in [d["id"] for d in cli.json("decision", "list", "--state", "approved")]


def test_agent_register_heartbeat_list(cli: Cli) -> None:
    capabilities = ["--capability", "code", "--capability", "review"]
    registered = cli.json("agent", "register", "coder", *capabilities, "--heartbeat-timeout", "600")
    assert set(registered) == {"agent_id", "deadline"}
    assert cli.json("agent", "heartbeat", "coder")["deadline"] >= registered["deadline"]
    agents = {agent["id"]: agent for agent in cli.json("agent", "list")}
    assert agents["coder"]["state"] == "alive"
    assert agents["coder"]["capabilities"] == ["code", "review"]
    rows = [line for line in cli("agent", "list").output.splitlines() if "coder" in line]
    assert len(rows) == 1 and "│ alive │" in rows[0]
    assert "not_found" in cli("agent", "heartbeat", "nobody", code=1).stderr


def test_watch_prints_count_events_as_json_lines(cli: Cli) -> None:
    task_id = cli.json("task", "submit", "{}", "--queue", "watched")["task_id"]
    index = int(task_id.removeprefix("task-"))  # an id left to the ledger is task-<log index>
    token = cli.json("task", "claim", "--agent", "w5", "--queue", "watched")["fencing_token"]
    cli("task", "complete", task_id, "--agent", "w5", "--token", str(token))
    out = cli("task", "watch", "--from", str(index), "--count", "3", "--json").stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["kind"] for e in events] == ["task.submitted", "task.claimed", "task.completed"]
    assert {e["data"]["task_id"] for e in events} == {task_id}
    assert events[0]["index"] == index and events[1]["data"]["token"] == token


def test_the_cluster_comes_from_the_environment(cluster: Cluster) -> None:
    outcome = CliRunner().invoke(
        app, ["agent", "list", "--json"], env={"RAFT_MANAGER_CLUSTER": str(cluster.config)}
    )
    assert outcome.exit_code == 0, outcome.output
    assert isinstance(json.loads(outcome.stdout), list)


def test_an_unreachable_cluster_is_exit_4() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    outcome = CliRunner().invoke(
        app, ["task", "list", "--cluster", nowhere, "--timeout", "0.3", "--json"]
    )
    assert outcome.exit_code == 4, outcome.output
    assert "did not answer" in outcome.stderr

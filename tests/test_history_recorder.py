"""The history format, its reader and recorder (raft_manager/client/history.py), the recording
wrappers (client/recording.py), `raft-manager check-history`, and a real 3-node cluster whose
recorded history the checkers accept."""

from __future__ import annotations

import asyncio
import io
import json
import random
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from cluster_helpers import Cluster, running_cluster
from history_helpers import get, op, put, put_info
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.client import SwarmClient
from raft_manager.client.client import ClientError
from raft_manager.client.history import (
    HistoryError,
    HistoryOp,
    HistoryRecorder,
    parse_history,
    read_history,
)
from raft_manager.client.recording import RecordingMemory, RecordingTasks, outcome
from raft_manager.verify.checks import Verdict
from raft_manager.verify.history_check import check_history
from raft_manager.verify.task_tables import fetch_task_tables, task_table_checks

# -- the format ------------------------------------------------------------------------------

GOOD = {"process": 1, "op": "put", "key": "k", "value": 1, "version": 3, "type": "ok"}


def line(**changes: Any) -> str:
    fields = {**GOOD, "invoke": 10, "complete": 20, **changes}
    return json.dumps({name: value for name, value in fields.items() if value is not ...})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a history line is a JSON object, not list"),
        (line(value=float("nan")), "NaN is not a JSON number"),
        ('{"process": 1, "process": 2}', "field 'process' appears twice"),
        (line(op="increment"), "op must be one of get, put"),
        (line(type="maybe"), "type must be ok, fail or info"),
        (line(process=True), "process must be an integer or a non-empty string"),
        (line(process=""), "process must be an integer or a non-empty string"),
        (line(invoke=...), "invoke and complete must be integers"),
        (line(invoke=True), "invoke and complete must be integers"),
        (line(invoke=-1), "invoke and complete must be integers >= 0"),
        (line(complete=5), "complete (5) is before invoke (10)"),
        (line(type="fail", version=...), "a fail line says why in error"),
        (line(error="timeout"), "error is a non-empty string, on fail and info lines only"),
        (line(key=...), "an ok put line needs key"),
        (line(version=...), "an ok put line needs version"),
        (line(type="info", error="timeout"), "unexpected field 'version' on an info put line"),
        (line(colour="red"), "unexpected field 'colour'"),
        (line(version=0), "version must be an integer >= 1, not 0"),
        (line(key=7), "key must be a non-empty string, not 7"),
        (line(op="get", value=..., found=True), "a get that found the key has value and version"),
        (line(op="get", found=False), "a get that found the key has value and version"),
        (line(op="cas"), "exactly one"),
        (line(op="cas", expected=1, expected_version=2), "exactly one"),
        (line(op="cas", expected_version=-1), "expected_version must be an integer >= 0"),
        (line(op="delete", value=..., version=..., existed="yes"), "existed must be true"),
        (
            line(op="task.claim", key=..., value=..., version=..., agent="a", lease_ms=5, task="t"),
            "a claim that got a task has token and lease_until",
        ),
        (
            line(op="task.list", key=..., value=..., version=..., limit=5, tasks=[{"id": "t"}]),
            'tasks must be a list of {"id", "state", "agent", "token", "lease_until"}',
        ),
        (line(op="task.submit", key=..., value=..., version=...), "an ok submit names the task"),
    ],
)
def test_a_bad_line_is_an_error_naming_it(text: str, problem: str) -> None:
    with pytest.raises(HistoryError) as caught:
        parse_history([line(), "", text, line()])
    assert caught.value.line == 3
    assert str(caught.value).startswith("line 3: ")
    assert problem in caught.value.message


def test_every_kind_of_line_reads_back() -> None:
    lines = [
        line(),
        line(op="get", value="x", version=2, found=True),
        line(op="get", value=..., version=..., found=False),
        line(op="cas", expected=None, process="p2"),
        line(op="cas", type="fail", version=..., expected_version=0, error="cas_failed"),
        line(op="delete", value=..., version=..., existed=True),
        line(op="task.submit", key=..., value=..., version=..., type="info", error="timeout"),
        line(op="task.claim", key=..., value=..., version=..., agent="a", lease_ms=5, task=None),
        line(
            op="task.renew",
            key=...,
            value=...,
            version=...,
            task="t",
            agent="a",
            token=3,
            lease_ms=5,
            lease_until=99,
        ),
        line(op="task.complete", key=..., value=..., version=..., task="t", agent="a", token=3),
        line(op="task.list", key=..., value=..., version=..., limit=5, tasks=[]),
    ]
    ops = parse_history(lines)
    assert [o.line for o in ops] == list(range(1, 12))
    assert [json.loads(o.to_json()) for o in ops] == [json.loads(text) for text in lines]


def test_the_recorder_writes_what_the_reader_reads(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    ops = [put(1, "k", 0, 1, "a", 1), get(2, "k", 2, 3, "a", 1), put_info(3, "k", 4, 5, "b")]
    with HistoryRecorder(path) as recorder:
        for item in ops:
            recorder.record(item)
        assert recorder.count == 3
    with HistoryRecorder(path) as recorder:  # a path is appended to
        recorder.record(ops[0])
    read = read_history(path)
    assert [o.as_dict() for o in read] == [o.as_dict() for o in (*ops, ops[0])]
    assert [o.line for o in read] == [1, 2, 3, 4]


def test_the_recorder_refuses_a_bad_operation_and_writes_nothing() -> None:
    stream = io.StringIO()
    recorder = HistoryRecorder(stream)
    with pytest.raises(ValueError, match="an ok put line needs version"):
        recorder.record(HistoryOp(1, "put", "ok", 0, 1, {"key": "k", "value": 1}))
    assert (stream.getvalue(), recorder.count) == ("", 0)
    recorder.close()
    assert not stream.closed  # an open file is the caller's to close


def test_threads_share_a_recorder() -> None:
    stream = io.StringIO()
    recorder = HistoryRecorder(stream)

    def work(process: int) -> None:
        for n in range(300):
            recorder.record(put(process, f"k{n % 3}", n, n + 1, f"{process}-{n}", n + 1))

    threads = [threading.Thread(target=work, args=(p,)) for p in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ops = parse_history(stream.getvalue().splitlines())
    assert len(ops) == recorder.count == 2400
    assert len({o.data["value"] for o in ops}) == 2400


# -- what an error means ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ClientError("cas_failed", "version is 3, not 2"), ("fail", "cas_failed")),
        (ClientError("stale_token", "held by a2"), ("fail", "stale_token")),
        (ClientError("invalid_command", "key: too long"), ("fail", "invalid_command")),
        (ClientError("bad_request", "no id"), ("fail", "bad_request")),
        (ClientError("stale_request", "acknowledged"), ("info", "stale_request")),
        (ClientError("unavailable", "n1 did not answer"), ("info", "unavailable")),
        (ClientError("bad_response", "not a map"), ("info", "bad_response")),
        (TimeoutError("no answer"), ("info", "timeout")),
        (ConnectionResetError(), ("info", "ConnectionResetError")),
        (asyncio.CancelledError(), ("info", "CancelledError")),
    ],
)
def test_what_each_error_makes_of_an_operation(
    error: BaseException, expected: tuple[str, str]
) -> None:
    assert outcome(error) == expected


class FakeSwarm:
    """Answers like a SwarmClient, or raises what it is told to."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.raises = raises

    async def _answer(self, answer: Any) -> Any:
        if self.raises is not None:
            raise self.raises
        return answer

    async def memory_get(self, key: str) -> Any:
        return await self._answer({"key": key, "value": [1], "version": 4, "expires_at": None})

    async def memory_cas(self, key: str, value: Any, **compared: Any) -> Any:
        return await self._answer({"ok": True, "version": 9, "expires_at": None})

    async def claim_task(self, agent: str, **fields: Any) -> Any:
        return await self._answer({"ok": True, "task_id": None})


async def test_the_wrappers_record_answers_and_errors() -> None:
    stream = io.StringIO()
    recorder = HistoryRecorder(stream)
    answering: Any = FakeSwarm()
    memory = RecordingMemory(answering, recorder, 7)
    assert (await memory.get("k"))["value"] == [1]
    await memory.cas("k", 2, expected_version=4)
    await RecordingTasks(answering, recorder, 7).claim("a1", lease_seconds=2.5)
    refused = RecordingMemory(FakeSwarm(ClientError("cas_failed", "no")), recorder, "p8")
    with pytest.raises(ClientError):
        await refused.cas("k", 3, expected=None)
    lost = RecordingMemory(FakeSwarm(TimeoutError("gone")), recorder, "p9")
    with pytest.raises(TimeoutError):
        await lost.get("k")
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    for fields in lines:
        assert fields.pop("invoke") <= fields.pop("complete")
    assert lines == [
        {
            "process": 7,
            "op": "get",
            "key": "k",
            "found": True,
            "value": [1],
            "version": 4,
            "type": "ok",
        },
        {
            "process": 7,
            "op": "cas",
            "key": "k",
            "value": 2,
            "expected_version": 4,
            "version": 9,
            "type": "ok",
        },
        {
            "process": 7,
            "op": "task.claim",
            "agent": "a1",
            "lease_ms": 2500,
            "task": None,
            "type": "ok",
        },
        {
            "process": "p8",
            "op": "cas",
            "key": "k",
            "value": 3,
            "expected": None,
            "error": "cas_failed",
            "type": "fail",
        },
        {"process": "p9", "op": "get", "key": "k", "error": "timeout", "type": "info"},
    ]


# -- check-history ---------------------------------------------------------------------------


def write(path: Path, ops: list[HistoryOp]) -> Path:
    path.write_text("".join(o.to_json() + "\n" for o in ops))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["check-history", *args])


def test_check_history_passes_a_linearizable_history(tmp_path: Path) -> None:
    path = write(tmp_path / "h", [put(1, "a", 0, 1, "x", 1), get(2, "a", 2, 3, "x", 1)])
    outcome = run(str(path))
    assert outcome.exit_code == 0, outcome.output
    assert "ok   memory: 1 key linearizable (a; 2 operations)" in outcome.stdout
    report = json.loads(run(str(path), "--json").stdout)
    assert (report["ok"], report["exit_code"], report["operations"]) == (True, 0, 2)
    assert report["keys"][0]["verdict"] == "linearizable"
    assert report["tasks"] is None


def test_check_history_prints_the_key_and_its_witness(tmp_path: Path) -> None:
    history = [
        put(1, "a", 0, 1, "old", 1),
        put(1, "a", 2, 3, "new", 2),
        get(2, "a", 4, 5, "old", 1),  # stale: seen at once
        put(1, "b", 0, 1, "x", 3),
        put(1, "c", 0, 1, "old", 4),
        put(1, "c", 2, 3, "new", 5),
        put_info(3, "c", 2.5, 3.5, "old"),
        get(2, "c", 4, 5, "old", 4),  # stale too, but only the search can tell
    ]
    path = write(tmp_path / "h", history)
    outcome = run(str(path))
    assert outcome.exit_code == 1
    assert outcome.stdout.splitlines()[:-1] == [
        "ok   memory: 1 key linearizable (b; 1 operation)",
        "FAIL key a: not linearizable (3 operations)",
        '     line 3: process 2 get -> "old" at version 1 [4.000-5.000 ms]',
        "     saw a stale write: line 2 wrote version 2 over it, acknowledged before this get "
        "was invoked",
        "FAIL key c: not linearizable (4 operations)",
        "     the longest linearizable prefix places 3 operations",
        "     ending with:",
        '       line 5: process 1 put "old" (version 4) [0.000-1.000 ms]',
        '       line 6: process 1 put "new" (version 5) [2.000-3.000 ms]',
        '       line 7: process 3 put "old" (info: timeout) [invoked at 2.500 ms, outcome unknown]',
        '     after it, c holds "old" at an unknown version; then',
        '       line 8: process 2 get -> "old" at version 4 [4.000-5.000 ms]',
        "     cannot take effect before it completed",
    ]
    report = json.loads(run(str(path), "--json").stdout)
    bad = {key["key"]: key for key in report["keys"] if key["verdict"] == "violation"}
    assert bad["a"]["witness"]["blocked"]["line"] == 3
    assert "stale" in bad["a"]["witness"]["unexplained"]
    assert bad["c"]["witness"]["unexplained"] is None
    assert [op["line"] for op in bad["c"]["witness"]["last"]] == [5, 6, 7]


def test_check_history_reports_task_rules(tmp_path: Path) -> None:
    ops = [
        op(1, "task.submit", 0, 1, task="t1"),
        op(2, "task.list", 2, 3, limit=10, tasks=[]),
    ]
    outcome = run(str(write(tmp_path / "h", ops)))
    assert outcome.exit_code == 1
    assert "FAIL tasks: Acknowledged Submit: task t1, acknowledged to process 1 (line 1)" in (
        outcome.stdout
    )


def test_check_history_says_undecided_when_the_budget_runs_out(tmp_path: Path) -> None:
    ops = [put_info(i, "a", 0, 100, i) for i in range(16)]
    ops += [get(20 + i, "a", 1, 99, i, 1000 + i) for i in range(16)]
    ops.append(get(99, "a", 1, 99, 0, 5000))
    outcome = run(str(write(tmp_path / "h", ops)), "--budget", "1000")
    assert outcome.exit_code == 3, outcome.output
    assert "skip key a: undecided: the search passed its budget of 1,000 steps" in outcome.stdout


def test_check_history_refuses_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_text(line() + "\n" + line(complete=1) + "\n")
    outcome = run(str(path))
    assert outcome.exit_code == 2
    assert f"error: {path}: line 2: complete (1) is before invoke (10)" in outcome.stderr
    report = json.loads(run(str(path), "--json").stdout)
    assert report["line"] == 2 and "complete (1)" in report["error"]
    missing = run(str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "No such file" in missing.stderr
    path.write_bytes(b"\xff\xfe\n")
    assert run(str(path)).exit_code == 2


# -- a real cluster --------------------------------------------------------------------------

KEYS = ("k0", "k1", "k2")


async def _memory_client(swarm: SwarmClient, recorder: HistoryRecorder, process: int) -> None:
    """Random gets, puts, value and version cas and deletes on a few keys, each value unique."""
    memory = RecordingMemory(swarm, recorder, process)
    rng = random.Random(process)
    versions: dict[str, int] = {}
    with anyio.move_on_after(2.0):
        for n in range(1_000_000):
            key, value = rng.choice(KEYS), f"p{process}-{n}"
            choice = rng.random()
            try:
                if choice < 0.4:
                    item = await memory.get(key)
                    versions[key] = item["version"] if item else 0
                elif choice < 0.7:
                    await memory.put(key, value)
                elif choice < 0.8:
                    await memory.cas(key, value, expected_version=versions.get(key, 0))
                elif choice < 0.9:
                    await memory.cas(key, value, expected=f"p{(process + 1) % 4}-{n - 1}")
                else:
                    await memory.delete(key)
            except ClientError as error:
                assert error.code == "cas_failed", error


async def _task_client(swarm: SwarmClient, recorder: HistoryRecorder) -> None:
    """Submits tasks and works them off as two agents, then lists them all."""
    tasks = RecordingTasks(swarm, recorder, "tasks")
    for n in range(10):
        await tasks.submit({"n": n}, task_id=f"t{n}")
    for n in range(12):
        agent = f"a{n % 2}"
        claim = await tasks.claim(agent, lease_seconds=5)
        if claim["task_id"] is None:
            continue
        token = claim["fencing_token"]
        await tasks.renew(claim["task_id"], agent, token, lease_seconds=5)
        if n % 4 == 3:
            await tasks.fail(claim["task_id"], agent, token, "try again")
        else:
            await tasks.complete(claim["task_id"], agent, token, {"done": n})
    await tasks.list_tasks()


def test_a_recorded_cluster_history_is_linearizable(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"

    async def main(cluster: Cluster) -> None:
        with HistoryRecorder(path) as recorder:
            async with anyio.create_task_group() as group:
                for process in range(4):
                    client = cluster.client()
                    group.start_soon(_with_client, client, _memory_client, recorder, process)
                group.start_soon(_with_client, cluster.client(), _task_client, recorder, None)

    with running_cluster(tmp_path) as cluster:
        anyio.run(main, cluster)
        tables = anyio.run(fetch_task_tables, cluster.client_addresses)
    ops = read_history(path)
    report = check_history(ops)
    assert report.exit_code == 0, [check.line() for check in report.checks()]
    assert [key.key for key in report.keys] == list(KEYS)
    kinds = {(o.op, o.type) for o in ops}
    assert {("get", "ok"), ("put", "ok"), ("cas", "ok"), ("cas", "fail"), ("delete", "ok")} <= kinds
    assert len([o for o in ops if o.op in ("get", "put", "cas", "delete")]) > 200
    assert report.tasks is not None
    assert report.tasks.counts["completed"] >= 5 and report.tasks.counts["listed"] == 1
    # Each node's own task table, read from its local state, is coherent.
    checks = task_table_checks(tables)
    assert [check.verdict for check in checks] == [Verdict.OK] * 3, checks
    assert all("10 coherent" in check.text for check in checks)


async def _with_client(client: Any, work: Any, recorder: HistoryRecorder, process: Any) -> None:
    async with client:
        swarm = SwarmClient(client)
        if process is None:
            await work(swarm, recorder)
        else:
            await work(swarm, recorder, process)


def test_the_documented_examples_are_valid_history_lines() -> None:
    docs = Path(__file__).parent.parent / "docs" / "verification.md"
    text = docs.read_text().split("<!-- history-examples", 1)[1]
    block = text.split("```jsonl\n", 1)[1].split("```", 1)[0]
    ops = parse_history(block.splitlines())
    assert {o.op for o in ops} == {
        "get",
        "put",
        "cas",
        "delete",
        "task.submit",
        "task.claim",
        "task.renew",
        "task.complete",
        "task.fail",
        "task.list",
    }
    assert {o.type for o in ops} == {"ok", "fail", "info"}
    report = check_history(ops)
    assert report.exit_code == 0, [check.line() for check in report.checks()]

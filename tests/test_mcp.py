"""`raft-manager mcp`: an MCP client session of the official `mcp` package over stdio, against a
real 3-node cluster (and against a cluster that is not running)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from cluster_helpers import IDS, Cluster, running_cluster
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from pydantic import BaseModel

from raft_manager.ledger import commands as c

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {
    "status",
    "health",
    "verify",
    "elect",
    "members_list",
    "members_add",
    "members_promote",
    "members_remove",
    "task_submit",
    "task_claim",
    "task_complete",
    "task_fail",
    "task_list",
    "memory_get",
    "memory_put",
    "memory_cas",
    "decision_propose",
    "decision_vote",
    "decision_get",
}
_ME = {"name": "test", "version": "0"}
LEDGER_MODELS: dict[str, type[BaseModel]] = {
    "task_submit": c.TaskSubmit,
    "task_claim": c.TaskClaim,
    "task_complete": c.TaskComplete,
    "task_fail": c.TaskFail,
    "task_list": c.TaskList,
    "memory_get": c.MemoryGet,
    "memory_put": c.MemoryPut,
    "memory_cas": c.MemoryCas,
    "decision_propose": c.DecisionPropose,
    "decision_vote": c.DecisionVote,
    "decision_get": c.DecisionGet,
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("mcp")) as running:
        yield running


@asynccontextmanager
async def mcp_session(*args: str) -> AsyncIterator[ClientSession]:
    """`raft-manager mcp ARGS` as a subprocess, and an initialized client session to it."""
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "raft_manager.cli", "mcp", *args], cwd=ROOT
    )
    with anyio.fail_after(30):
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


class Tools:
    """Calls that check the result is what they expect (an answer, or a tool error)."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def raw(self, name: str, **arguments: Any) -> types.CallToolResult:
        result = await self.session.call_tool(name, arguments)
        assert isinstance(result, types.CallToolResult)
        return result

    async def __call__(self, name: str, **arguments: Any) -> Any:
        result = await self.raw(name, **arguments)
        assert not result.is_error, result.content
        (text,) = result.content
        assert isinstance(text, types.TextContent)
        assert json.loads(text.text) == result.structured_content
        return result.structured_content

    async def error(self, name: str, **arguments: Any) -> str:
        result = await self.raw(name, **arguments)
        assert result.is_error, result.structured_content
        (text,) = result.content
        assert isinstance(text, types.TextContent)
        assert result.structured_content == {
            "error": result.structured_content["error"],
            "message": text.text,
        }
        assert text.text.startswith(f"{result.structured_content['error']}: ")
        return text.text


@asynccontextmanager
async def tools_of(cluster: Cluster) -> AsyncIterator[Tools]:
    async with mcp_session("--cluster", str(cluster.config)) as session:
        yield Tools(session)


async def test_lists_every_tool_with_the_ledger_models_as_schemas(cluster: Cluster) -> None:
    async with mcp_session("--cluster", str(cluster.config)) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(listed) == TOOLS
    for tool in listed.values():
        assert tool.input_schema["type"] == "object" and "properties" in tool.input_schema
        assert tool.description
    for name, model in LEDGER_MODELS.items():
        schema = listed[name].input_schema
        fixed = {"op", "query"}
        assert set(schema["properties"]) == set(model.model_fields) - fixed, name
        required = {field for field, info in model.model_fields.items() if info.is_required()}
        assert set(schema.get("required", [])) == required, name
        assert schema["additionalProperties"] is False
    assert listed["task_complete"].input_schema["properties"]["token"]["minimum"] == 1
    assert listed["status"].annotations is not None
    assert listed["status"].annotations.read_only_hint is True
    assert set(listed["members_add"].input_schema["required"]) == {
        "node",
        "address",
        "client_address",
    }


async def test_submit_claim_complete_and_a_stale_token(cluster: Cluster) -> None:
    async with tools_of(cluster) as call:
        submitted = await call("task_submit", payload={"n": 1}, queue="mcp", priority=3)
        assert submitted == {"task_id": submitted["task_id"], "state": "pending", "existing": False}
        task_id = submitted["task_id"]
        claim = await call("task_claim", agent="w1", queues=["mcp"], lease_seconds=60)
        assert (claim["task_id"], claim["payload"], claim["attempt"]) == (task_id, {"n": 1}, 1)
        token = claim["fencing_token"]

        stale = await call.error(
            "task_complete", task_id=task_id, agent="w1", token=token + 1000, result=1
        )
        assert stale.startswith("stale_token: ") and f"under token {token}" in stale
        wrong_agent = await call.error(
            "task_complete", task_id=task_id, agent="w2", token=token, result=1
        )
        assert wrong_agent.startswith("stale_token: ")

        done = await call(
            "task_complete", task_id=task_id, agent="w1", token=token, result={"answer": 42}
        )
        assert done == {"task_id": task_id, "state": "done"}
        (task,) = (await call("task_list", queue="mcp"))["tasks"]
        assert (task["id"], task["state"], task["result"]) == (task_id, "done", {"answer": 42})
        assert await call("task_claim", agent="w1", queues=["mcp"]) == {"task_id": None}
        again = await call.error("task_fail", task_id=task_id, agent="w1", token=token)
        assert again.startswith("stale_token: ") and "is done" in again


async def test_memory_put_get_cas(cluster: Cluster) -> None:
    async with tools_of(cluster) as call:
        assert await call("memory_get", key="mcp/absent") == {"item": None}
        written = await call("memory_put", key="mcp/k", value={"v": 1}, namespace="mcp")
        item = (await call("memory_get", key="mcp/k", namespace="mcp"))["item"]
        assert (item["value"], item["version"]) == ({"v": 1}, written["version"])

        on_value = await call(
            "memory_cas", key="mcp/k", namespace="mcp", value=2, expected_value={"v": 1}
        )
        assert on_value["version"] > written["version"]
        missed = await call.error(
            "memory_cas", key="mcp/k", namespace="mcp", value=3, expected_value={"v": 1}
        )
        assert missed.startswith("cas_failed: ")
        # expected_version alone compares on the version
        on_version = await call(
            "memory_cas",
            key="mcp/k",
            namespace="mcp",
            value=4,
            expected_version=on_value["version"],
        )
        old = await call.error(
            "memory_cas", key="mcp/k", namespace="mcp", value=5, expected_version=written["version"]
        )
        assert old.startswith("cas_failed: ")
        item = (await call("memory_get", key="mcp/k", namespace="mcp"))["item"]
        assert (item["value"], item["version"]) == (4, on_version["version"])


async def test_health_status_verify_members_a_decision_and_elect(cluster: Cluster) -> None:
    async with tools_of(cluster) as call:
        health = await call("health")
        assert health["state"] == "healthy" and health["reason"].startswith("healthy: leader ")
        assert (health["answering"], health["total"], health["down"]) == (3, 3, [])
        status = await call("status")
        assert status["leader"] == health["leader"] and status["leader"] in IDS
        assert [node["id"] for node in status["nodes"]] == list(IDS)
        assert all(node["reachable"] for node in status["nodes"])
        verified = await call("verify", wait_seconds=5)
        assert verified["consistent"] is True and verified["exit_code"] == 0, verified
        assert verified["checks"] and all(c["verdict"] == "ok" for c in verified["checks"])
        members = (await call("members_list"))["members"]
        assert {(m["id"], m["role"]) for m in members} == {(n, "voter") for n in IDS}

        proposed = await call(
            "decision_propose", question="ship it?", voters=["a1", "a2", "a3"], id="mcp-d1"
        )
        assert proposed["decision_id"] == "mcp-d1"
        await call("decision_vote", decision_id="mcp-d1", voter="a1", option="approve")
        voted = await call(
            "decision_vote", decision_id="mcp-d1", voter="a2", option="approve", reason="tested"
        )
        assert voted == {"decision_id": "mcp-d1", "state": "approved"}
        decision = (await call("decision_get", decision_id="mcp-d1"))["decision"]
        assert (decision["winner"], len(decision["votes"])) == ("approve", 2)
        assert (await call.error("decision_get", decision_id="nope")).startswith("not_found: ")
        refused = await call.error("decision_vote", decision_id="mcp-d1", voter="x", option="a")
        assert refused.split(":")[0] in {"not_eligible", "closed"}

        moved = await call("elect")
        assert moved["old"] == status["leader"] and moved["new"] in set(IDS) - {moved["old"]}
        assert moved["term"] > status["term"]
        assert (await call("status"))["leader"] == moved["new"]


async def test_bad_arguments_are_tool_errors_naming_the_problem(cluster: Cluster) -> None:
    async with tools_of(cluster) as call:
        wrong_type = await call.error("task_complete", task_id="t", agent="w1", token="abc")
        assert wrong_type.startswith("invalid_arguments: ")
        assert "token: Input should be a valid integer" in wrong_type
        missing = await call.error("task_claim", queues=["q"])
        assert missing == "invalid_arguments: agent: Field required"
        several = await call.error("task_submit", priority=10**9, id="a b", colour="red")
        assert "priority:" in several and "id:" in several
        assert "colour: Extra inputs are not permitted" in several
        twice = await call.error("decision_propose", question="q", options=["a", "a"])
        assert twice.startswith("invalid_arguments: ") and "an option is listed twice" in twice
        fixed = await call.error("task_submit", op="task.cancel")
        assert fixed == "invalid_arguments: op: set by the server, not an argument"
        bad_address = await call.error(
            "members_add", node="n9", address="nowhere", client_address="127.0.0.1:1"
        )
        assert bad_address.startswith("invalid_arguments: address:")
        with pytest.raises(MCPError, match="unknown tool"):
            await call.session.call_tool("task_teleport", {})
        # the server is still there, and what was refused changed nothing
        assert await call("task_list", queue="q") == {"tasks": []}


async def test_an_unreachable_cluster_is_a_clear_error_and_the_server_stays_up(
    tmp_path: Path,
) -> None:
    down = Cluster(tmp_path)  # its file, with no node started
    async with mcp_session("--cluster", str(down.config), "--timeout", "0.5") as session:
        call = Tools(session)
        started = time.monotonic()
        submit = await call.error("task_submit", payload=1)
        assert submit.startswith("unavailable: the cluster did not answer within 0.5 s")
        assert "did not answer" in submit
        assert time.monotonic() - started < 5
        status = await call.error("status")
        assert status.startswith("unavailable: no node of the cluster answers")
        health = await call("health")
        assert (health["state"], health["answering"], health["down"]) == (
            "no_quorum",
            0,
            list(IDS),
        )
        verify = await call.error("verify")
        assert verify.startswith("unavailable: cannot verify: cluster unreachable")
        elect = await call.error("elect")
        assert elect.startswith("unavailable: ")
        assert len((await session.list_tools()).tools) == len(TOOLS)


def test_stdout_carries_nothing_but_the_protocol_and_eof_ends_the_server(tmp_path: Path) -> None:
    down = Cluster(tmp_path)  # no node started: the calls fail, and their failures are answers
    command = [sys.executable, "-m", "raft_manager.cli", "mcp", "--timeout", "0.3"]
    errors = (tmp_path / "stderr").open("w")
    server = subprocess.Popen(
        [*command, "--cluster", str(down.config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        cwd=ROOT,
    )
    assert server.stdin is not None and server.stdout is not None
    requests = [
        ("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": _ME}),
        ("tools/list", {}),
        ("tools/call", {"name": "memory_get", "arguments": {"key": "k"}}),
        ("tools/call", {"name": "health", "arguments": {}}),
    ]
    answers = []
    try:
        for number, (method, params) in enumerate(requests, start=1):
            request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
            server.stdin.write(json.dumps(request) + "\n")
            if method == "initialize":
                server.stdin.write('{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
            server.stdin.flush()
            answers.append(json.loads(server.stdout.readline()))  # one whole JSON-RPC line
        server.stdin.close()
        assert server.wait(timeout=10) == 0, (tmp_path / "stderr").read_text()
        assert server.stdout.read() == ""  # nothing else was written, not even on the way out
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
        errors.close()
    assert [answer["id"] for answer in answers] == [1, 2, 3, 4]
    assert all(answer["jsonrpc"] == "2.0" and "result" in answer for answer in answers), answers
    assert answers[0]["result"]["serverInfo"]["name"] == "raft-manager"
    assert len(answers[1]["result"]["tools"]) == len(TOOLS)
    assert answers[2]["result"]["isError"] is True
    assert answers[2]["result"]["structuredContent"]["error"] == "unavailable"
    assert answers[3]["result"]["structuredContent"]["state"] == "no_quorum"


def test_a_bad_cluster_file_exits_2_before_serving(tmp_path: Path) -> None:
    broken = tmp_path / "cluster.toml"
    broken.write_text("this is not toml [")
    ran = subprocess.run(
        [sys.executable, "-m", "raft_manager.cli", "mcp", "--cluster", str(broken)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 2 and ran.stdout == ""
    assert "error:" in ran.stderr

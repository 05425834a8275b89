"""The hooks' task text: --task, $TASK, or a Claude Code hook's JSON on stdin, read bounded."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator

import pytest

from raft_manager.cli.hook_input import HookInputError, read_bounded, read_task, task_from_payload

PRE_TOOL_USE = {
    "session_id": "abc",
    "transcript_path": "/tmp/t.jsonl",
    "cwd": "/work",
    "hook_event_name": "PreToolUse",
    "tool_name": "Task",
    "tool_input": {
        "description": "Leader election drill",
        "prompt": "Transfer leadership to n3, then check log replication",
        "subagent_type": "raft-manager",
    },
}


def _stdin(payload: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(payload), encoding="utf-8")


def test_the_option_wins_then_the_environment_then_stdin() -> None:
    stdin = _stdin(json.dumps({"prompt": "from stdin"}).encode())
    assert read_task("from the option", {"TASK": "from env"}, stdin) == "from the option"
    assert read_task(None, {"TASK": "from env"}, stdin) == "from env"
    assert read_task(None, {}, stdin) == "from stdin"
    assert read_task(None, {"TASK": ""}, _stdin(b"")) == ""  # nothing anywhere: no task
    assert read_task(None, {}, None) == ""


def test_a_claude_code_payload_gives_its_prompt_and_tool_input_text() -> None:
    text = task_from_payload(json.dumps(PRE_TOOL_USE).encode())
    assert text == ("Transfer leadership to n3, then check log replication\nLeader election drill")
    prompt = {"hook_event_name": "UserPromptSubmit", "prompt": "run an election"}
    assert task_from_payload(json.dumps(prompt).encode()) == "run an election"
    bash = {"tool_name": "Bash", "tool_input": {"command": "ls", "timeout": 5}}
    assert task_from_payload(json.dumps(bash).encode()) == "ls"
    # An MCP tool's own name counts as words (raft-manager's tools have no prompt to read).
    elect = {"tool_name": "mcp__raft-manager__elect", "tool_input": {"to": "n1"}}
    assert task_from_payload(json.dumps(elect).encode()) == "elect"
    members = {"tool_name": "mcp__raft-manager__members_add", "tool_input": {"node": "n4"}}
    assert task_from_payload(json.dumps(members).encode()) == "members add"
    odd = {"prompt": 3, "tool_input": ["not", "a", "map"]}
    assert task_from_payload(json.dumps(odd).encode()) == ""
    assert task_from_payload(b"  \n") == ""


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"run an election", "not a hook's JSON payload"),
        (b"[1, 2]", "not an object"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unusable_stdin_is_a_clear_error(raw: bytes, why: str) -> None:
    with pytest.raises(HookInputError, match=why):
        task_from_payload(raw)


def test_stdin_larger_than_the_bound_is_refused() -> None:
    with pytest.raises(HookInputError, match="more than 1,024 bytes"):
        read_bounded(io.BytesIO(b"x" * 2000), limit=1024)


@pytest.fixture
def pipe() -> Iterator[tuple[io.BufferedReader, int]]:
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    try:
        yield reader, write_fd
    finally:
        reader.close()
        os.close(write_fd)


def test_a_pipe_left_open_and_empty_does_not_hang_the_hook(
    pipe: tuple[io.BufferedReader, int],
) -> None:
    reader, _ = pipe
    started = time.monotonic()
    assert read_bounded(reader, seconds=0.2) == b""
    assert time.monotonic() - started < 1.0


def test_a_pipe_that_never_closes_after_some_input_is_refused(
    pipe: tuple[io.BufferedReader, int],
) -> None:
    reader, write_fd = pipe
    os.write(write_fd, b'{"prompt": ')
    with pytest.raises(HookInputError, match="not closed within"):
        read_bounded(reader, seconds=0.2)


def test_a_real_pipe_is_read_to_its_end() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, json.dumps(PRE_TOOL_USE).encode())
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        assert "Leader election drill" in read_task(None, {}, reader)

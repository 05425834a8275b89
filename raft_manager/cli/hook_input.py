"""The task text a hook judges: from --task, else $TASK, else a Claude Code hook's JSON on stdin.

Theory of operation: the text only selects checks (verify/hooks.py matches words in it); it is
never passed to a shell, evaluated or run. Stdin is read only when neither --task nor $TASK
gives a text and stdin is not a terminal, and then at most MAX_STDIN_BYTES for at most
STDIN_SECONDS: a hook runner that leaves stdin open without writing to it must not hang the
hook (nothing read by then means no task). Stdin holds the JSON payload of a Claude Code hook
(PreToolUse, PostToolUse, UserPromptSubmit, ...): the text is gathered from its `prompt`,
from its `tool_input`'s `prompt`, `description` and `command` strings, and from an MCP tool's
own name (`tool_name` mcp__SERVER__TOOL: TOOL, `_` read as a space, so raft-manager's `elect`
calls for the election checks); other fields are ignored. Empty stdin means no task; anything
else that is not such a JSON object (not UTF-8, not JSON, too large, not closed in time) is a
HookInputError.
"""

from __future__ import annotations

import io
import json
import os
import select
import time
from collections.abc import Mapping
from typing import IO, Any

MAX_STDIN_BYTES = 1 << 20
STDIN_SECONDS = 1.0
TOOL_INPUT_FIELDS = ("prompt", "description", "command")
MCP_PREFIX = "mcp__"  # Claude Code names an MCP tool mcp__<server>__<tool>


class HookInputError(ValueError):
    """The hook's input cannot be used (the message says why)."""


def read_task(option: str | None, environ: Mapping[str, str], stdin: IO[Any] | None) -> str:
    if option is not None:
        return option
    if environ.get("TASK"):
        return environ["TASK"]
    if stdin is None or stdin.closed or stdin.isatty():
        return ""
    return task_from_payload(read_bounded(stdin))


def read_bounded(
    stream: IO[Any], limit: int = MAX_STDIN_BYTES, seconds: float = STDIN_SECONDS
) -> bytes:
    """Up to `limit` bytes until end of file, waiting at most `seconds` for it."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):  # an in-memory stream: cannot block
        data = stream.read(limit + 1)
        return _within(data.encode() if isinstance(data, str) else bytes(data), limit)
    chunks: list[bytes] = []
    size, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return _within(b"".join(chunks), limit)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    if size and size <= limit:
        raise HookInputError(f"stdin was not closed within {seconds:g} s")
    return _within(b"".join(chunks), limit)


def _within(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise HookInputError(f"stdin holds more than {limit:,} bytes")
    return data


def task_from_payload(raw: bytes) -> str:
    """The task text in a hook's JSON payload ("" for empty input)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HookInputError("stdin is not UTF-8 text") from None
    if not text.strip():
        return ""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise HookInputError(f"stdin is not a hook's JSON payload: {error}") from None
    if not isinstance(payload, dict):
        raise HookInputError("stdin's JSON is not an object (a hook payload is one)")
    parts = [payload.get("prompt")]
    tool_input = payload.get("tool_input")
    if isinstance(tool_input, dict):
        parts += [tool_input.get(name) for name in TOOL_INPUT_FIELDS]
    tool = payload.get("tool_name")
    if isinstance(tool, str) and tool.startswith(MCP_PREFIX):
        parts.append(tool.rpartition("__")[2].replace("_", " "))
    return "\n".join(part for part in parts if isinstance(part, str) and part)

"""The MCP server: the tools served over stdio with the official `mcp` package's low-level server.

Theory of operation: `serve` opens one RaftClient (one client session, so the ledger applies a
command the client retries once) and wraps it in one SwarmClient for the server's lifetime, then
serves MCP on stdin/stdout until the client closes stdin. While it serves, the `mcp` package
points fd 1 at stderr, so nothing but the protocol reaches stdout; logs go to stderr.
`tools/list` lists every tool with its input schema (tools.py); `tools/call` validates the
arguments, runs the tool and answers with its JSON result twice, as structured content and as
text. Every failure of a call is a tool error (`isError`), never a crash of the server: its text
starts with a code and says what went wrong, and its structured content is
`{"error": code, "message": text}`:

    invalid_arguments       the arguments do not fit the tool's model (pydantic's messages)
    <the ledger's code>     the ledger refused the command (stale_token, not_found, ...)
    invalid_command, conf_rejected, ...   the node refused it
    unavailable             no answer within --timeout (no node reachable, or no leader)
    internal                a bug: the traceback is logged to stderr

An unknown tool name is a protocol error (invalid params), as the MCP specification asks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from raft_manager import __version__
from raft_manager.client import ClientError, RaftClient, SwarmClient
from raft_manager.client.cluster_view import Members

from .cluster_tools import CLUSTER_TOOLS
from .ledger_tools import LEDGER_TOOLS
from .tools import Cluster, Tool, ToolFailure

logger = logging.getLogger(__name__)

TOOLS: tuple[Tool[Any], ...] = (*CLUSTER_TOOLS, *LEDGER_TOOLS)
INSTRUCTIONS = (
    "raft-manager coordinates an agent swarm through a Raft cluster: tasks claimed under leases"
    " with fencing tokens, a shared memory with compare-and-set, decisions by majority vote."
    " Claim with task_claim, keep its fencing_token, and pass it as `token` to task_complete or"
    " task_fail (there is no renew tool: claim with a lease_seconds long enough for the work); a"
    " stale_token error means this agent no longer holds the task (its lease ran out, and the"
    " result is dropped). Every write is committed on a majority before it is answered."
)


def _listing(tools: Sequence[Tool[Any]]) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(
                name=tool.name,
                description=tool.description,
                input_schema=tool.input_schema(),
                annotations=types.ToolAnnotations(
                    read_only_hint=tool.read_only, open_world_hint=False
                ),
            )
            for tool in tools
        ]
    )


def _answer(result: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(result))], structured_content=result
    )


def _error(code: str, message: str) -> types.CallToolResult:
    text = message if message.startswith(f"{code}: ") else f"{code}: {message}"
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={"error": code, "message": text},
        is_error=True,
    )


async def call(
    tool: Tool[Any], cluster: Cluster, arguments: dict[str, Any] | None
) -> types.CallToolResult:
    """Run one tool call; every failure becomes a tool error."""
    try:
        return _answer(await tool.run(cluster, tool.arguments(arguments)))
    except ToolFailure as failure:
        return _error(failure.code, failure.message)
    except ClientError as error:  # its text is already "code: message"
        return _error(error.code, str(error))
    except TimeoutError as error:
        return _error(
            "unavailable", f"the cluster did not answer within {cluster.timeout} s ({error})"
        )
    except Exception as error:  # a bug; the server must stay up for the next call
        logger.exception("tool %s failed", tool.name)
        return _error("internal", f"{tool.name} failed: {type(error).__name__}: {error}")


def build_server(cluster: Cluster, tools: Sequence[Tool[Any]] = TOOLS) -> Server[Any]:
    by_name = {tool.name: tool for tool in tools}
    listing = _listing(tools)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listing

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        return await call(tool, cluster, params.arguments)

    return Server(
        "raft-manager",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve(members: Members, timeout: float) -> None:
    """Serve MCP over stdin/stdout until stdin closes."""
    async with RaftClient(list(members.clients.values()), timeout=timeout) as client:
        server = build_server(Cluster(SwarmClient(client), members, timeout))
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

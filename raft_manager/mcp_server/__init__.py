"""The MCP server (`raft-manager mcp`): the cluster's and the ledger's operations as MCP tools
over stdio, for any MCP-speaking agent framework. tools.py: what a tool is (its schema and
validation come from a pydantic model); ledger_tools.py and cluster_tools.py: the tools;
server.py: serving them with the official `mcp` package. Named mcp_server, not mcp, so that
it is never mistaken for the `mcp` package itself."""

from .server import TOOLS, build_server, serve

__all__ = ["TOOLS", "build_server", "serve"]

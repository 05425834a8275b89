"""What an MCP tool is here: a name, a description, the pydantic model of its arguments, a call.

Theory of operation: a tool's input schema is its argument model's JSON schema, minus the fields
the server fills in itself (`fixed`: a ledger command's `op`, a query's `query`). So the schema
an MCP client sees and the rules its arguments are checked against come from one place, the
model, and for the ledger tools that model is the ledger's own command or query model
(raft_manager/ledger/commands.py): the arguments are refused by exactly the rules a node would
refuse them by, before anything goes on the wire. A fixed field keeps the model's default; a
caller who names one is refused. `run` gets the validated model and the `Cluster` the server
holds for its lifetime and returns a JSON object, or raises: `ToolFailure` (a code and a
message for the caller), `ClientError` (a refusal by the cluster or the ledger, with its code)
or `TimeoutError` (the cluster did not answer); the server turns each into a tool error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from raft_manager.client import SwarmClient
from raft_manager.client.cluster_view import Members
from raft_manager.ledger.commands import explain

Args = TypeVar("Args", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Cluster:
    """What every tool runs against: one SwarmClient (one client session, so a command the
    client retries is applied once) and the cluster's known members (for status and health)."""

    swarm: SwarmClient
    members: Members
    timeout: float  # seconds a call waits for the cluster


class ToolFailure(Exception):
    """A tool's call failed: `code` for programs, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Tool(Generic[Args]):
    name: str
    description: str
    model: type[Args]
    run: Callable[[Cluster, Args], Awaitable[dict[str, Any]]]
    fixed: tuple[str, ...] = ()  # fields of the model the server fills in itself
    read_only: bool = False

    def input_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        properties = schema.get("properties", {})
        for name in self.fixed:
            properties.pop(name, None)
        schema["properties"] = properties
        required = [name for name in schema.get("required", []) if name not in self.fixed]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)
        schema.pop("title", None)
        schema.pop("description", None)  # the tool's description says it for the caller
        return schema

    def arguments(self, raw: dict[str, Any] | None) -> Args:
        """The validated arguments, or ToolFailure("invalid_arguments") naming every problem."""
        given = dict(raw or {})
        problems = [
            f"{name}: set by the server, not an argument" for name in self.fixed if name in given
        ]
        if problems:
            raise ToolFailure("invalid_arguments", "; ".join(problems))
        try:
            return self.model.model_validate(given)
        except ValidationError as error:
            raise ToolFailure("invalid_arguments", explain(error)) from None

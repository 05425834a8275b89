"""What the ledger commands (task, agent, memory, decision) share: options, the call, output.

Theory of operation: a command parses its arguments (JSON ones here, so bad JSON is exit 2
before anything is sent), finds the cluster like `status` does (--cluster FILE or
HOST:PORT,HOST:PORT, else $RAFT_MANAGER_CLUSTER, else ./.raft-manager/cluster.toml), opens one
RaftClient and runs its calls on a SwarmClient (which validates them before they go on the
wire), then prints the answer: with --json exactly one JSON document (a command's result
without its `ok` flag; a query's object or array), else a short line or a table. The outcome
maps to the exit codes in EXIT_CODES; refusals go to stderr as `error: CODE: message`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from raft_manager.client import ClientError, RaftClient, SwarmClient

from .cluster import CLUSTER_HELP, resolve_cluster

EXIT_CODES = (
    "Exit codes: 0 done; 1 the ledger refused it (its error code is printed); 2 bad usage, bad"
    " JSON, bad cluster file, or a command the ledger finds invalid (invalid_command); 3 nothing"
    " (no task to claim, no such key); 4 the cluster did not answer within --timeout."
)
REFUSED, BAD_USAGE, NOTHING, UNAVAILABLE = 1, 2, 3, 4

ClusterOption = Annotated[str | None, typer.Option("--cluster", help=CLUSTER_HELP)]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the cluster's answer.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (shape in the help above).")]
StaleOption = Annotated[
    bool,
    typer.Option("--stale", help="Read the state of whichever node answers (may lag behind)."),
]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", help="The memory namespace (default: default).")
]
TIMESTAMPS = ("lease_until", "updated_at", "submitted_at", "deadline", "expires_at", "closed_at")

T = TypeVar("T")
Function = TypeVar("Function", bound=Callable[..., Any])


def command(app: typer.Typer, name: str) -> Callable[[Function], Function]:
    """Register a ledger command: its docstring is its help (each paragraph rewrapped by the
    terminal), EXIT_CODES the epilog."""

    def register(function: Function) -> Function:
        paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
        text = "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)
        app.command(name, help=text, epilog=EXIT_CODES)(function)
        return function

    return register


@dataclass(frozen=True, slots=True)
class _Failed:
    exit_code: int
    message: str


def call(cluster: str | None, timeout: float, work: Callable[[SwarmClient], Awaitable[T]]) -> T:
    """Run `work` on a SwarmClient connected to the cluster; exit 1, 2 or 4 when it fails."""
    addresses = list(resolve_cluster(cluster).clients.values())

    async def session() -> T | _Failed:
        async with RaftClient(addresses, timeout=timeout) as client:
            try:
                return await work(SwarmClient(client))
            except ClientError as error:
                exit_code = BAD_USAGE if error.code == "invalid_command" else REFUSED
                return _Failed(exit_code, f"error: {error}")
            except TimeoutError as error:
                return _Failed(UNAVAILABLE, f"error: the cluster did not answer: {error}")

    outcome = anyio.run(session)
    if isinstance(outcome, _Failed):
        typer.echo(outcome.message, err=True)
        raise typer.Exit(outcome.exit_code)
    return outcome


def json_argument(text: str, name: str) -> Any:
    """`text` parsed as JSON, or a usage error (exit 2) naming the argument."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(
            f"not valid JSON ({error}); quote a string as JSON: '\"text\"'", param_hint=name
        ) from None


def answer(result: dict[str, Any]) -> dict[str, Any]:
    """A command's result as printed by --json: without the `ok` flag."""
    return {key: value for key, value in result.items() if key != "ok"}


def show(as_json: bool, data: Any, human: RenderableType) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    else:
        Console().print(Text(human) if isinstance(human, str) else human)


def cell(name: str, value: Any) -> str:
    """One value for people: a timestamp as local time, JSON as compact JSON, None (or a
    timestamp of 0: not set) as '-'."""
    if value is None or (name in TIMESTAMPS and value == 0):
        return "-"
    if name in TIMESTAMPS and isinstance(value, int):
        return datetime.fromtimestamp(value / 1000).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def table(title: str, rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> Table:
    shown = Table(title=title)
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*(Text(cell(column, row.get(column))) for column in columns))
    return shown

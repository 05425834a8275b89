"""`raft-manager check-history FILE`: is a recorded history linearizable, and does it keep the
task rules?

The checkers are raft_manager/verify/ (history_check.py runs them all); this module reads the
file, runs them and prints the report: one line per check, or with --json one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from raft_manager.client.history import HistoryError, read_history
from raft_manager.verify.history_check import check_history
from raft_manager.verify.linearizability import DEFAULT_BUDGET


def check_history_command(
    path: Path = typer.Argument(
        ..., metavar="FILE", help="A history file: JSON lines, one per operation."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (shape above)."),
    budget: int = typer.Option(
        DEFAULT_BUDGET, "--budget", min=1, help="Search steps each key may take (about 1 us each)."
    ),
) -> None:
    """Check a recorded history of memory and task operations.

    Memory operations (get, put, cas, delete): linearizable, key by key, with indeterminate
    (info) operations taking effect at any moment after their invoke, or never. Task operations:
    every acknowledged submit stays, leases never overlap, every accepted renew, complete and
    fail carries the current fencing token, no task is completed twice. The format and the
    rules are in docs/verification.md.

    JSON: {"ok", "exit_code", "operations", "seconds", "budget", "keys": [{"key", "verdict":
    "linearizable"|"violation"|"unknown", "ops", "checked", "steps", "witness": null or
    {"unexplained", "placed", "last", "state", "blocked", "concurrent"}}], "tasks": null or
    {"ok", "counts", "violations": [{"rule", "task", "detail", "lines"}]}}; on a bad file
    {"error", "line"}.

    Exit codes: 0 no violation; 1 a violation (the key and its witness, or the task rule, are
    printed); 2 the file is unreadable or a line is not a history operation (its number is
    printed); 3 no violation, but some key's search passed its budget (undecided).
    """
    try:
        ops = read_history(path)
    except (HistoryError, OSError, UnicodeDecodeError) as error:
        line = error.line if isinstance(error, HistoryError) else None
        message = f"{path}: {error}"
        if as_json:
            typer.echo(json.dumps({"error": message, "line": line}))
        else:
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    report = check_history(ops, budget)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for check in report.checks():
            typer.echo(check.line())
        typer.echo(f"{report.operations:,} operations checked in {report.seconds:.2f} s")
    raise typer.Exit(report.exit_code)

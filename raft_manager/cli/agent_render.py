"""`raft-manager agent render [--live]`: the agent definition, optionally with the cluster's state.

Theory of operation: without --live this prints exactly agents/<name>.md as `skill render`
writes it (rendered from skill.yaml). With --live it first asks the cluster (found like
`status` finds it) for its state with the status machinery (raft_manager/skill/live.py, which
uses raft_manager/client/cluster_view.py) and adds a "Live cluster state" section: the
leader, the term, every node's role and membership, and the health verdict. When no node
answers, the rendering says that the cluster could not be reached and the exit code is 2.

Exit codes: 0 rendered; 2 --live and the cluster could not be reached (the rendering says so),
a bad --cluster, or skill.yaml missing or invalid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from .cluster import CLUSTER_HELP, resolve_cluster
from .skill import load_skill

if TYPE_CHECKING:
    from raft_manager.skill.live import LiveState

UNREACHABLE = 2


def render_command(
    live: Annotated[
        bool, typer.Option("--live", help="Add the cluster's current state (asks the cluster).")
    ] = False,
    cluster: Annotated[str | None, typer.Option("--cluster", help=CLUSTER_HELP)] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the membership.")
    ] = 5.0,
    skill_file: Annotated[
        Path | None,
        typer.Option(
            "--skill-file",
            help="The skill.yaml to use (default: the repository's).",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the agent definition (agents/NAME.md) rendered from skill.yaml.

    --live adds the cluster's current leader, term, members with their roles and the health
    verdict. --json: {"markdown", "live": null or {"observed_at", "reachable", "leader",
    "term", "nodes": [...], "health": {...}}}. Exit codes: 0 rendered, 2 --live and the
    cluster could not be reached (the rendering says so), bad usage, or skill.yaml missing
    or invalid.
    """
    from raft_manager.skill.live import observe  # here: jinja2 costs every other command
    from raft_manager.skill.render import render_agent_md

    card, _ = load_skill(skill_file)
    state: LiveState | None = None
    if live:
        members = resolve_cluster(cluster)
        state = anyio.run(observe, members, timeout)
    markdown = render_agent_md(card, state)
    if as_json:
        document = {"markdown": markdown, "live": state.as_dict() if state else None}
        typer.echo(json.dumps(document))
    else:
        typer.echo(markdown, nl=False)
    raise typer.Exit(UNREACHABLE if state is not None and not state.reachable else 0)

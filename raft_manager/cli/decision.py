"""`raft-manager decision ...`: propose, vote, get, list.

Theory of operation: each command is one SwarmClient call (see ledger.py for the cluster, the
output and the exit codes). A decision closes as soon as one option has votes from more than
half of its eligible voters, when no option can get there any more, or at its deadline.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .ledger import (
    ClusterOption,
    JsonOption,
    StaleOption,
    TimeoutOption,
    answer,
    call,
    cell,
    command,
    show,
    table,
)

decision_app = typer.Typer(
    help="Swarm decisions: a question, options, voters, decided by strict majority.",
    no_args_is_help=True,
)
DecisionId = Annotated[str, typer.Argument(help="The decision's id.", show_default=False)]


@command(decision_app, "propose")
def propose_command(
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    options: Annotated[
        list[str] | None,
        typer.Option("--option", help="An option (repeatable; default: approve, reject)."),
    ] = None,
    voters: Annotated[
        list[str] | None,
        typer.Option("--voter", help="An eligible voter (repeatable; default: agents alive)."),
    ] = None,
    deadline: Annotated[
        float | None, typer.Option("--deadline", help="Seconds it stays open (default: 300).")
    ] = None,
    decision_id: Annotated[
        str | None, typer.Option("--id", help="Default: decision-<log index>.")
    ] = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Open a decision.

    --json: {"decision_id", "voters", "deadline"} (ms since the epoch).
    """
    result = call(
        cluster,
        timeout,
        lambda swarm: swarm.propose_decision(
            question,
            options=options,
            voters=voters,
            deadline_seconds=deadline,
            decision_id=decision_id,
        ),
    )
    show(
        as_json,
        answer(result),
        f"decision {result['decision_id']}: {len(result['voters'])} voters, open until"
        f" {cell('deadline', result['deadline'])}",
    )


@command(decision_app, "vote")
def vote_command(
    decision_id: DecisionId,
    option: Annotated[str, typer.Argument(help="The option voted for.", show_default=False)],
    voter: Annotated[str, typer.Option("--voter", help="Who votes.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Vote on a decision, once.

    --json: {"decision_id", "state"}: the state after this vote (open, approved, rejected);
    exit 1 with closed, not_eligible or already_voted.
    """
    result = call(
        cluster, timeout, lambda swarm: swarm.vote(decision_id, voter, option, reason=reason)
    )
    show(as_json, answer(result), f"decision {decision_id}: {result['state']}")


@command(decision_app, "get")
def get_command(
    decision_id: DecisionId,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Show one decision, with every vote.

    --json: {"id", "question", "options", "voters", "deadline", "created_at", "votes", "state",
    "winner", "closed_at", "counts", "participation_rate", "approval_rate"}; an unknown id is
    exit 1, not_found.
    """
    decision = call(cluster, timeout, lambda swarm: swarm.get_decision(decision_id, stale=stale))
    votes = table(
        f"{decision['question']} -> {decision['state']}, winner {cell('', decision['winner'])}",
        decision["votes"],
        ("voter", "option", "reason"),
    )
    show(as_json, decision, votes)


@command(decision_app, "list")
def list_command(
    state: Annotated[
        str | None, typer.Option("--state", help="open, approved, rejected or expired.")
    ] = None,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """List decisions in the order they were proposed.

    --json: an array of decisions (as `decision get` prints them).
    """
    decisions = call(cluster, timeout, lambda swarm: swarm.list_decisions(state=state, stale=stale))
    columns = ("id", "state", "winner", "question", "counts", "deadline")
    show(as_json, decisions, table(f"{len(decisions)} decisions", decisions, columns))

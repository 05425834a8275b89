"""`raft-manager hooks check pre|post` (the checks the hook scripts run) and `hooks run pre|post`
(run the hook scripts themselves, as an agent framework would).

Theory of operation: the scripts hooks/pre and hooks/post only find this command and call
`hooks check`; what is checked lives in raft_manager/verify/hooks.py. `check` reads the task
text (cli/hook_input.py: --task, $TASK, or a Claude Code hook's JSON on stdin), runs the
phase's checks and prints one line per check. `run` starts hooks/<phase> as a subprocess in a
new process group, never through a shell: the task goes in its environment as TASK, its stdin
is closed, and if it has not finished within --timeout the whole group is killed.

Exit codes: 0 every check passed; 1 a check failed; 2 the cluster cannot be reached (no node
answers), the hook input is unusable, the hook timed out or was not found, or bad usage.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path

import anyio
import typer

import raft_manager
from raft_manager.verify.hooks import (
    DEFAULT_MAX_LAG,
    HookOutcome,
    mentions_election,
    mentions_replication,
    post_hook,
    pre_hook,
)

from .cluster import CLUSTER_HELP, resolve_cluster
from .hook_input import HookInputError, read_task

hooks_app = typer.Typer(
    help="The pre/post hooks: their checks, and running them.", no_args_is_help=True
)
BAD_USAGE = 2
TASK_HELP = "The task text (default: $TASK, else a Claude Code hook's JSON on stdin)."


class Phase(StrEnum):
    PRE = "pre"
    POST = "post"


@hooks_app.command("check")
def check_command(
    phase: Phase = typer.Argument(..., help="pre (before a task) or post (after it)."),
    task: str | None = typer.Option(None, "--task", help=TASK_HELP),
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    max_lag: int = typer.Option(
        DEFAULT_MAX_LAG, "--max-lag", min=0, help="pre: entries a node may trail the commit by."
    ),
    wait: float = typer.Option(
        5.0, "--wait", min=0.0, help="post: seconds to wait for an election or a catch-up."
    ),
    timeout: float = typer.Option(
        5.0, "--timeout", min=0.1, help="Seconds a node gets to answer one request."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check the cluster before (pre) or after (post) a task; one line per check.

    pre: a leader is known, a quorum of voters answers, no node that answers lags more than
    --max-lag entries behind the leader's commit (a silent node is named, skipped); if the
    task mentions an election, also a healthy transfer target. post: verify (logs and state
    digests agree); if the task mentions an election, a single leader in the newest term; if
    it mentions replication (replicat..., log, append...), every node caught up to the
    leader's commit index (a node that does not answer fails it).

    JSON: {"phase", "election": bool, "replication": bool, "checks": [{"verdict": "ok" |
    "FAIL" | "skip", "text"}], "exit_code"}. Exit codes: 0 ok, 1 a check failed, 2 the
    cluster cannot be reached or the hook input is unusable.
    """
    try:
        text = read_task(task, os.environ, sys.stdin)
    except HookInputError as error:
        typer.echo(f"error: hook input: {error}", err=True)
        raise typer.Exit(BAD_USAGE) from None
    members = resolve_cluster(cluster)
    outcome: HookOutcome
    if phase is Phase.PRE:
        outcome = anyio.run(partial(pre_hook, members, text, max_lag=max_lag, timeout=timeout))
    else:
        outcome = anyio.run(partial(post_hook, members, text, wait=wait, timeout=timeout))
    if as_json:
        document = {
            "phase": phase.value,
            "election": mentions_election(text),
            "replication": mentions_replication(text),
            "checks": [check.as_dict() for check in outcome.checks],
            "exit_code": outcome.exit_code,
        }
        typer.echo(json.dumps(document))
    else:
        for check in outcome.checks:
            typer.echo(check.line())
    raise typer.Exit(outcome.exit_code)


def default_hooks_dir() -> Path:
    """hooks/ at the root of the source tree this package was installed from."""
    return Path(raft_manager.__file__).resolve().parent.parent / "hooks"


@hooks_app.command("run")
def run_command(
    phase: Phase = typer.Argument(..., help="pre or post."),
    task: str | None = typer.Option(None, "--task", help="The task text, passed as $TASK."),
    timeout: float = typer.Option(
        60.0, "--timeout", min=0.1, help="Seconds before the hook is killed (exit 2)."
    ),
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    directory: Path | None = typer.Option(
        None, "--dir", help="Where the hook scripts are (default: the source tree's hooks/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run the hook script hooks/PHASE (no shell; the task in its environment) with a timeout.

    Prints what the hook printed and exits with its exit code; exit 2 if it is missing or
    did not finish within --timeout (then it and its children are killed). JSON: {"phase",
    "exit_code", "output" (its stdout), "errors" (its stderr, then why the run failed)}.
    """
    ran = run_hook(phase.value, task=task, cluster=cluster, timeout=timeout, directory=directory)
    if as_json:
        document = {"phase": phase.value, "exit_code": ran.code, "output": ran.output}
        typer.echo(json.dumps({**document, "errors": ran.errors}))
        raise typer.Exit(ran.code)
    if ran.output:
        typer.echo(ran.output, nl=False)
    if ran.errors:
        typer.echo(ran.errors, nl=False, err=True)
    raise typer.Exit(ran.code)


@dataclass(frozen=True, slots=True)
class HookRun:
    code: int  # the hook's exit code; 2 when it was missing, timed out or died of a signal
    output: str  # what it printed on stdout
    errors: str  # what it printed on stderr, then why the run failed, if it did


def run_hook(
    phase: str,
    *,
    task: str | None = None,
    cluster: str | None = None,
    timeout: float = 60.0,
    directory: Path | None = None,
) -> HookRun:
    """Run hooks/<phase> ("pre" or "post") as a subprocess in its own process group, without
    a shell: `task` in its environment as TASK, stdin closed, `cluster` as --cluster; after
    `timeout` seconds the group is killed."""
    if phase not in {p.value for p in Phase}:
        raise ValueError(f"phase must be pre or post, not {phase!r}")
    script = (directory or default_hooks_dir()) / phase
    if not script.is_file() or not os.access(script, os.X_OK):
        return HookRun(BAD_USAGE, "", f"error: no executable hook at {script}\n")
    environment = dict(os.environ)
    if task is not None:
        environment["TASK"] = task
    installed = Path(sys.executable).with_name("raft-manager")
    if "RAFT_MANAGER_BIN" not in environment and installed.exists():
        environment["RAFT_MANAGER_BIN"] = str(installed)  # the hook runs this installation
    process = subprocess.Popen(
        [str(script), *(["--cluster", cluster] if cluster else [])],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    why = ""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:  # what it printed before; a child that left the group may hold the pipes open
            out, err = process.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = b"", b""
        why = f"error: hook {phase} did not finish within {timeout:g} s: killed\n"
    if not why and process.returncode < 0:
        why = f"error: hook {phase} died of signal {-process.returncode}\n"
    code = BAD_USAGE if why else process.returncode
    return HookRun(code, out.decode(errors="replace"), err.decode(errors="replace") + why)

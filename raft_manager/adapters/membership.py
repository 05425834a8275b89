"""Carrying out a Quorum Manager's membership request through the cluster's safe membership
change, within a time limit, and saying how it ended.

Theory of operation: every change is a single-server change made by the leader (core: one at a
time, only after the leader committed an entry of its term, a learner promoted only once it has
caught up). `add` is the safe way to a new voter: the node joins as a learner (no vote, so a
slow or broken newcomer cannot cost the cluster its quorum), is sent the log until it has caught
up, and only then promoted. An `add` whose node is already a learner resumes at the promotion,
so a peer may send an `add` that timed out again. Refusals that pass by themselves (the learner
still lags, another change is in flight, no entry of the term committed yet, a leadership
transfer) are retried (client/cluster_view.change_members); any other refusal ends the request
`rejected` with the core's reason, and nothing changed. Passing refusals are retried until
`LAST_WORD_S` before the time runs out, so the last one can be told; when the time runs out the
request ends `timed_out`, saying how far it got (a learner added but not yet promoted stays a
learner) and what still stood in the way.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from raft_manager.client import ClientError, RaftClient
from raft_manager.client.cluster_view import change_members, passing

from .messages import ChangeRequest, ChangeResult, MemberEntry

LAST_WORD_S = 0.5  # stop retrying this long before the end (over two retry intervals)


class _Refused(Exception):
    """The cluster refused the change for good."""


async def carry_out(client: RaftClient, request: ChangeRequest, timeout: float) -> ChangeResult:
    """Make the change `request` asks for, within `timeout` seconds."""
    done: list[str] = []  # the steps taken, for a timed-out answer
    last = ""  # the last passing refusal, for a timed-out answer
    retry_until = time.monotonic() + max(0.0, timeout - LAST_WORD_S)
    with anyio.move_on_after(timeout):
        try:
            members = await _steps(client, request, retry_until, done)
        except _Refused as error:
            return refusal(request, "rejected", str(error))
        except TimeoutError as error:
            last = f" ({error})" if str(error) else ""
        else:
            listed = [MemberEntry.model_validate(member) for member in members]
            return ChangeResult(
                ok=True, outcome="applied", members=listed, action=request.action, node=request.node
            )
    taken = f" after: {'; '.join(done)}" if done else ""
    return refusal(request, "timed-out", f"not done within {timeout:g} s{taken}{last}")


def refusal(request: ChangeRequest | None, error: str, reason: str) -> ChangeResult:
    """The answer to a request that was not carried out: `timed-out`, or refused."""
    return ChangeResult(
        ok=False,
        error=error,
        outcome="timed_out" if error == "timed-out" else "rejected",
        reason=reason,
        action=request.action if request is not None else None,
        node=request.node if request is not None else None,
    )


async def _steps(
    client: RaftClient, request: ChangeRequest, retry_until: float, done: list[str]
) -> list[dict[str, Any]]:
    node = request.node
    if request.action == "add":
        role = await _role_of(client, node)
        if role == "voter":
            raise _Refused(f"{node} is already a voter")
        if role is None:
            await _change(client, _addition(request, "add_learner"), retry_until)
            done.append(f"{node} added as a learner")
        return await _change(client, {"kind": "promote", "node": node}, retry_until)
    if request.action == "add_learner":
        return await _change(client, _addition(request, "add_learner"), retry_until)
    return await _change(client, {"kind": request.action, "node": node}, retry_until)


def _addition(request: ChangeRequest, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "node": request.node,
        "address": request.address,
        "client_address": request.client_address,
    }


async def _role_of(client: RaftClient, node: str) -> str | None:
    listed = (await client.members())["members"]
    return next((str(member["role"]) for member in listed if member["id"] == node), None)


async def _change(
    client: RaftClient, body: dict[str, Any], retry_until: float
) -> list[dict[str, Any]]:
    wait = max(0.0, retry_until - time.monotonic())
    try:
        members: list[dict[str, Any]] = (await change_members(client, body, wait))["members"]
    except ClientError as error:
        message = str(error).removeprefix(f"{error.code}: ")
        if passing(error):  # still refused when the time ran out
            raise TimeoutError(message) from None
        raise _Refused(message) from None
    return members

"""Verifying a live cluster's consistency across its nodes: what `raft-manager verify` runs.

Theory of operation, in three steps over one RaftClient:

1. Heads. Every member is asked for its log bounds (the client protocol's `log` op with count
   0, a local read on each node), all at once. A member that does not answer, or answers
   nonsense, is reported unreachable and left out; when no member answers, the cluster is
   unreachable and nothing else is tried.
2. Logs. The range every node can answer for (compare.py: from the newest snapshot point to
   the lowest commit index) is read in pages of LOG_PAGE_MAX entries, each page from every node
   at once, and compared page by page as (term, type, crc32c); the first divergence ends the
   walk. A node that stops answering mid-walk, answers a page that leaves out entries it
   holds, or no longer holds a page's entries (it compacted past them during the walk) is
   reported and left out from then on: only nodes compared on the whole range are named.
3. State. The leader proposes a checkpoint; every node notes its state digest right after
   applying it (server/digests.py). Each node is asked for its note until it has one, or has
   applied past the checkpoint without one (a snapshot took it past), or `wait` seconds passed;
   the notes are compared. When the checkpoint cannot commit (no quorum, no leader), the state
   is not compared, and the report says so: the logs were still compared.

The `Report` renders as check lines (checks.py) and as the JSON document `verify --json`
prints (`Report.as_dict`, documented in docs/verification.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from raft_manager.client import ClientError, RaftClient
from raft_manager.transport.client_protocol import LOG_PAGE_MAX

from .checks import Check, exit_code
from .compare import Divergence, LogHead, common_range, digest_groups, first_divergence, records

POLL_SECONDS = 0.05  # how often a node is asked again for its checkpoint digest


@dataclass(slots=True)
class LogComparison:
    low: int
    high: int
    compared: int  # indexes examined (up to and including a divergence)
    nodes: list[str]
    divergence: Divergence | None = None

    def check(self) -> Check:
        if self.divergence is not None:
            return Check.failed(f"log: {self.divergence.describe()}")
        if len(self.nodes) < 2:
            return Check.skipped(f"log: only {', '.join(self.nodes)} answers: nothing to compare")
        if self.low > self.high:
            return Check.skipped(
                "log: no committed range in common (a node committed less than another keeps "
                "after its snapshot): nothing to compare"
            )
        return Check.passed(
            f"log: entries {self.low:,}..{self.high:,} agree on {', '.join(self.nodes)}"
        )

    def as_dict(self) -> dict[str, Any]:
        empty = self.low > self.high
        return {
            "from": None if empty else self.low,
            "to": None if empty else self.high,
            "compared": self.compared,
            "divergence": None if self.divergence is None else self.divergence.as_dict(),
        }


@dataclass(slots=True)
class StateComparison:
    checkpoint: int | None  # its index, None when no checkpoint committed
    digests: dict[str, str | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # node -> why it has no digest
    note: str = ""

    @property
    def groups(self) -> list[tuple[str, list[str]]]:
        return digest_groups({node: d for node, d in self.digests.items() if d is not None})

    def checks(self) -> list[Check]:
        if self.checkpoint is None:
            return [Check.skipped(f"state: not compared: {self.note}")]
        at = f"checkpoint {self.checkpoint:,}"
        groups = self.groups
        found = [
            Check.skipped(f"state: {node} not compared: {why}")
            for node, why in self.missing.items()
        ]
        if len(groups) > 1:
            held = "; ".join(f"{', '.join(nodes)} {digest[:12]}" for digest, nodes in groups)
            found.insert(0, Check.failed(f"state: digests differ at {at}: {held}"))
        elif groups:
            digest, nodes = groups[0]
            found.insert(
                0,
                Check.passed(f"state: digests agree at {at} on {', '.join(nodes)} ({digest[:12]})"),
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        groups = self.groups
        return {
            "compared": len(groups) > 0,
            "checkpoint": self.checkpoint,
            "digests": self.digests,
            "divergence": (
                [{"digest": digest, "nodes": nodes} for digest, nodes in groups]
                if len(groups) > 1
                else None
            ),
            "note": self.note or "; ".join(f"{n}: {why}" for n, why in self.missing.items()),
        }


@dataclass(slots=True)
class Report:
    heads: dict[str, LogHead]  # by node id: every node that answered at first
    unreachable: dict[str, str]  # node (id, or member name) -> why
    log: LogComparison | None = None
    state: StateComparison | None = None

    def checks(self) -> list[Check]:
        found = [
            Check.skipped(f"{node} unreachable, not checked: {why}")
            for node, why in self.unreachable.items()
        ]
        if not self.heads:
            return [Check.failed("cluster unreachable: no node answers"), *found]
        if self.log is not None:
            found.append(self.log.check())
        if self.state is not None:
            found.extend(self.state.checks())
        return found

    @property
    def exit_code(self) -> int:
        """0 consistent, 1 a divergence, 2 no node answers."""
        return exit_code(self.checks(), reachable=bool(self.heads))

    def as_dict(self) -> dict[str, Any]:
        nodes = [
            {**head.as_dict(), "reachable": node not in self.unreachable}
            for node, head in self.heads.items()
        ]
        nodes += [
            {"id": node, "reachable": False, "error": why}
            for node, why in self.unreachable.items()
            if node not in self.heads
        ]
        for node in nodes:
            if node["id"] in self.unreachable:
                node["error"] = self.unreachable[node["id"]]
        code = self.exit_code
        return {
            "consistent": None if code == 2 else code == 0,
            "exit_code": code,
            "nodes": nodes,
            "log": None if self.log is None else self.log.as_dict(),
            "state": None if self.state is None else self.state.as_dict(),
        }


Answer = dict[str, Any] | Exception


async def _each(
    nodes: Mapping[str, str], ask: Callable[[str], Awaitable[Any]]
) -> dict[str, Answer]:
    """Ask every node at once; each node's answer, or the error it gave, in `nodes`' order."""
    answers: dict[str, Answer] = {}

    async def one(node: str, address: str) -> None:
        try:
            answers[node] = await ask(address)
        except (ClientError, TimeoutError) as error:
            answers[node] = error

    async with anyio.create_task_group() as group:
        for node, address in nodes.items():
            group.start_soon(one, node, address)
    return {node: answers[node] for node in nodes}


async def verify_cluster(
    members: Mapping[str, str],
    *,
    timeout: float = 5.0,
    wait: float = 5.0,
    page: int = LOG_PAGE_MAX,
) -> Report:
    """Verify the cluster whose members are {name: client address}; see the module doc."""
    if not 1 <= page <= LOG_PAGE_MAX:
        raise ValueError(f"page must be in 1..{LOG_PAGE_MAX}")
    async with RaftClient(list(members.values()), timeout=timeout) as client:
        report = Report({}, {})
        addresses: dict[str, str] = {}  # node id -> client address, of the nodes still answering
        for name, answer in (await _each(members, lambda a: client.log(a, 0, 0))).items():
            try:
                if isinstance(answer, Exception):
                    raise answer
                head = LogHead.parse(answer)
            except (ClientError, TimeoutError, ValueError) as error:
                report.unreachable[name] = str(error)
                continue
            report.heads[head.node] = head
            addresses[head.node] = members[name]
        if not report.heads:
            return report
        report.log = await _compare_logs(client, report, addresses, page)
        report.state = await _compare_state(client, addresses, wait)
        return report


async def _compare_logs(
    client: RaftClient, report: Report, addresses: dict[str, str], page: int
) -> LogComparison:
    low, high = common_range(report.heads.values())
    comparison = LogComparison(low, high, 0, sorted(addresses))
    for start in range(low, high + 1, page):
        if not addresses:
            break  # every node stopped answering
        end = min(start + page - 1, high)
        answers = await _each(addresses, partial(client.log, start=start, count=end - start + 1))
        views = {}
        for node, answer in answers.items():
            try:
                if isinstance(answer, Exception):
                    raise answer
                head = LogHead.parse(answer)
                views[node] = records(head, answer.get("entries"), start, end)
                if head.snapshot_index > start or head.commit_index < end:
                    raise ValueError(  # the rest is compared on the others, not named as agreeing
                        f"no longer holds entries {start:,}..{end:,} (compacted to "
                        f"{head.snapshot_index:,}, committed {head.commit_index:,})"
                    )
            except (ClientError, TimeoutError, ValueError) as error:
                report.unreachable[node] = f"stopped answering at entry {start:,}: {error}"
                views.pop(node, None)
                del addresses[node]
        comparison.nodes = sorted(addresses)  # those that answered for the whole range
        divergence = first_divergence(views, start, end)
        if divergence is not None:
            comparison.divergence = divergence
            comparison.compared = divergence.index - low + 1
            return comparison
        comparison.compared = end - low + 1
    return comparison


async def _compare_state(
    client: RaftClient, addresses: dict[str, str], wait: float
) -> StateComparison:
    try:
        made = await client.checkpoint()
    except (ClientError, TimeoutError) as error:
        return StateComparison(None, note=f"no checkpoint could be committed ({error})")
    index = made.get("index")
    if type(index) is not int or index < 1:
        return StateComparison(None, note=f"the leader answered a bad checkpoint: {made!r}")
    state = StateComparison(index)
    pending = dict(addresses)
    deadline = anyio.current_time() + wait
    while pending:
        answers = await _each(pending, lambda a: client.digest(a, index))
        for node, answer in answers.items():
            if isinstance(answer, Exception):
                state.missing[node] = f"did not answer: {answer}"
            elif isinstance(answer.get("digest"), str):
                state.digests[node] = answer["digest"]
            elif type(answer.get("applied_index")) is int and answer["applied_index"] >= index:
                state.missing[node] = "applied past the checkpoint without noting it (a snapshot)"
            else:
                continue
            del pending[node]
        if pending and anyio.current_time() >= deadline:
            for node in pending:
                state.missing[node] = f"had not applied the checkpoint after {wait:g} s"
            break
        if pending:
            await anyio.sleep(POLL_SECONDS)
    state.digests = {node: state.digests.get(node) for node in addresses}
    return state

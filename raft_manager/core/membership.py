"""Membership changes, one server at a time (Raft dissertation, chapter 4).

Theory of operation: a change (add a voter, add a learner, promote a learner, remove a member)
travels as a CONF_CHANGE log entry and takes effect on each server as soon as the entry is in its
log, committed or not. So a server's configuration is that of the newest configuration entry in
its log, or of its snapshot when the log holds none. `ConfHistory` keeps the configuration
entries of the log (index, term, resulting configuration) over the configuration at the log's
start, so that truncating the log (a follower's conflicting suffix replaced) rolls the
configuration back with it, and a snapshot records the configuration in force at its index.
A change that makes no sense for the configuration it lands on (adding a voter twice, removing a
stranger) changes nothing on any server: every server decides it the same way. `context` is the
runtime's (the new member's address); the core never reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from .errors import ConfChangeRejected
from .log import RaftLog
from .types import ConfState, Entry, EntryType, NodeId


class ConfChangeKind(Enum):
    ADD_VOTER = "add_voter"
    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ConfChange:
    kind: ConfChangeKind
    node: NodeId
    context: str = ""  # opaque to the core: the runtime puts the member's address here

    def encode(self) -> bytes:
        body = {"kind": self.kind.value, "node": self.node, "context": self.context}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange | None:
        """The change an entry carries, or None if it carries none that parses."""
        try:
            body = json.loads(data)
            change = cls(ConfChangeKind(body["kind"]), body["node"], body.get("context", ""))
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(change.node, str) or not change.node:
            return None
        if not isinstance(change.context, str):
            return None
        return change


def apply_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after `change`; ConfChangeRejected if it does not apply to `conf`."""
    node, voters, learners = change.node, set(conf.voters), set(conf.learners)
    contexts = dict(conf.contexts)
    kind = change.kind
    if kind is ConfChangeKind.ADD_VOTER or kind is ConfChangeKind.ADD_LEARNER:
        if node in voters or node in learners:
            raise ConfChangeRejected(f"{node} is already a member")
        (voters if kind is ConfChangeKind.ADD_VOTER else learners).add(node)
        if change.context:
            contexts[node] = change.context
    elif kind is ConfChangeKind.PROMOTE:
        if node not in learners:
            raise ConfChangeRejected(f"{node} is not a learner")
        learners.discard(node)
        voters.add(node)
    else:
        if node not in voters and node not in learners:
            raise ConfChangeRejected(f"{node} is not a member")
        if voters == {node}:
            raise ConfChangeRejected(f"{node} is the last voter")
        voters.discard(node)
        learners.discard(node)
        contexts.pop(node, None)
    return ConfState(tuple(voters), tuple(learners), tuple(contexts.items()))


class ConfHistory:
    """The configurations of one log: the one at its start and one per configuration entry."""

    def __init__(self, base: ConfState, entries: Sequence[Entry] = ()) -> None:
        self._base = base
        self._changes: list[tuple[int, int, ConfState]] = []  # (index, term, configuration)
        self.appended(entries)

    @property
    def current(self) -> ConfState:
        return self._changes[-1][2] if self._changes else self._base

    @property
    def last_change_index(self) -> int:
        """Index of the newest configuration entry in the log (0 if none)."""
        return self._changes[-1][0] if self._changes else 0

    def at(self, index: int) -> ConfState:
        """The configuration in force once the log is applied up to `index`."""
        conf = self._base
        for change_index, _term, after in self._changes:
            if change_index > index:
                break
            conf = after
        return conf

    def appended(self, entries: Sequence[Entry]) -> None:
        """Entries went onto the end of the log: take in their configuration changes."""
        for entry in entries:
            if entry.type is EntryType.CONF_CHANGE and entry.index > self.last_change_index:
                change = ConfChange.decode(entry.data)
                current = self.current
                try:
                    after = apply_change(current, change) if change is not None else current
                except ConfChangeRejected:
                    after = current  # the same no-op on every server
                self._changes.append((entry.index, entry.term, after))

    def follow(self, log: RaftLog, entries: Sequence[Entry]) -> None:
        """A follower's log took `entries` (maybe replacing a suffix): roll back the changes
        whose entries are gone, then take in the new ones."""
        while self._changes and not log.match_term(self._changes[-1][0], self._changes[-1][1]):
            self._changes.pop()
        self.appended([entry for entry in entries if log.match_term(entry.index, entry.term)])

    def compact(self, index: int) -> None:
        """The log now starts after `index`."""
        self._base = self.at(index)
        self._changes = [change for change in self._changes if change[0] > index]

    def restore(self, conf: ConfState) -> None:
        """The log was replaced by a snapshot whose configuration is `conf`."""
        self._base = conf
        self._changes = []

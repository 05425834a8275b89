"""Majority arithmetic over a set of voters.

Theory of operation: a quorum is a strict majority of the voters. The commit index is the highest
index that a majority has matched; an election is won by a majority of grants and lost once a
majority can no longer be reached. Learners never appear here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from .types import NodeId


class VoteResult(Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voter_count: int) -> int:
    return voter_count // 2 + 1


def quorum_value(values: Sequence[int]) -> int:
    """The largest value that at least a majority of `values` reach (0 for no voters)."""
    if not values:
        return 0
    ordered = sorted(values, reverse=True)
    return ordered[majority(len(ordered)) - 1]


def vote_result(voters: Sequence[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    granted = rejected = 0
    for voter in voters:
        answer = votes.get(voter)
        if answer is True:
            granted += 1
        elif answer is False:
            rejected += 1
    needed = majority(len(voters))
    if granted >= needed:
        return VoteResult.WON
    if len(voters) - rejected < needed:
        return VoteResult.LOST
    return VoteResult.PENDING

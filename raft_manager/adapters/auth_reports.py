"""Authentication failures, gathered for the Security Manager: envelopes the bus refused and Raft
frames the transport dropped for failing authentication.

Theory of operation: the bus hands every envelope its gate refuses to `record` (its on_reject
callback, synchronous, never blocking); they wait here, at most `KEPT` of them (the rest are
only counted, so a flood of forgeries costs bounded memory). The transport counts the frames
it drops by reason; `take` returns what was recorded since the last call and, for each
authentication reason, how many more frames were dropped since then. A report that could not
be sent is `put_back`, to go out with the next. Each node reports its own: no other node sees
what its gate and its transport refused.
"""

from __future__ import annotations

from collections import Counter

from raft_manager.transport.base import TransportStats

from .messages import AuthFailures, RejectionReport
from .signing import Rejection

KEPT = 100
FRAME_REASONS = (  # transport/auth.py and tcp.py: why a frame failed to authenticate
    "unauthenticated",
    "unknown-key",
    "expired-key",
    "key-not-yet-valid",
    "bad-mac",
    "tls-handshake",
)


class AuthFailureLog:
    def __init__(self, frames: TransportStats) -> None:
        self._frames = frames
        self._frames_seen: Counter[str] = Counter()
        self._rejections: list[RejectionReport] = []
        self._omitted = 0

    def record(self, rejection: Rejection) -> None:
        if len(self._rejections) < KEPT:
            self._rejections.append(RejectionReport.model_validate(rejection.to_json()))
        else:
            self._omitted += 1

    def take(self, node_id: str) -> AuthFailures | None:
        """What failed since the last call, or None when nothing did."""
        frames = {}
        for reason in FRAME_REASONS:
            count = self._frames.dropped[reason]
            if count > self._frames_seen[reason]:
                frames[reason] = count - self._frames_seen[reason]
                self._frames_seen[reason] = count
        if not (self._rejections or self._omitted or frames):
            return None
        report = AuthFailures(
            node=node_id, rejections=self._rejections, omitted=self._omitted, frames=frames
        )
        self._rejections, self._omitted = [], 0
        return report

    def put_back(self, report: AuthFailures) -> None:
        """`report` (from `take`) was not sent: what it holds goes out with the next one, ahead
        of what failed since (still at most KEPT listed)."""
        rejections = report.rejections + self._rejections
        self._rejections = rejections[:KEPT]
        self._omitted += report.omitted + len(rejections[KEPT:])
        self._frames_seen.subtract(report.frames)

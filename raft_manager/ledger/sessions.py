"""Client sessions: every command is applied once, however often the client retries it.

Theory of operation (Raft dissertation, chapter 6): a client numbers its commands within a
session and tells, with each, the lowest number it still awaits an answer for (`ack`). The ledger
keeps the result of every command at or above that number; a command it has a result for is
answered from the record and not applied again; one below `ack` was answered already and is
refused as `stale_request`. At most `max_results` results are kept per session: the oldest go
first, and the session's floor rises past them as if acknowledged (a client with more commands
awaiting answers sees a retry of the forgotten one, or a command below it that arrives late,
refused as `stale_request`: never applied twice, though the late one is not applied at all). A
session expires `timeout` after its last command, by entry timestamps. Its one timer is set when
it starts and, when it fires on a session used since, set again for `timeout` after that last
use: not moved on every command (a heap push per command, on every replica). A replica
restored from a snapshot sets it at the last use's deadline straight away; both expire the
session at the same entry, the first whose clock passes that deadline, and a session's expiry
touches nothing else, so where it falls among the timers firing at that entry changes nothing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from .errors import LedgerError
from .timers import Timers

SESSION = "session"


@dataclass(slots=True)
class Session:
    last_active: int
    ack: int = 0
    results: dict[int, Any] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # a heap of the request numbers in results

    def keep(self, seq: int, result: Any) -> None:
        self.results[seq] = result
        heapq.heappush(self.order, seq)

    def forget_oldest(self) -> None:
        del self.results[heapq.heappop(self.order)]


@dataclass(slots=True)
class SessionTable:
    timers: Timers
    timeout_ms: int
    max_results: int
    sessions: dict[str, Session] = field(default_factory=dict)

    def recall(self, session_id: str, seq: int, ack: int, now: int) -> Any:
        """The recorded result for a retried command, or None if it is new; refreshes the
        session, forgets results below `ack`; raises `stale_request` below the client's ack."""
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = Session(now)
            self.timers.schedule(now + self.timeout_ms, SESSION, session_id)
        session.last_active = now
        if ack > session.ack:
            session.ack = ack
            while session.order and session.order[0] < ack:
                session.forget_oldest()
        if seq in session.results:
            return session.results[seq]
        if seq < session.ack:
            raise LedgerError(
                "stale_request",
                f"request {seq} is below this session's floor {session.ack}: answered and "
                "acknowledged, or below a result forgotten for room (more than "
                f"{self.max_results} awaiting answers)",
            )
        return None

    def record(self, session_id: str, seq: int, result: Any) -> None:
        session = self.sessions[session_id]
        session.keep(seq, result)
        if len(session.results) > self.max_results:
            # The client may still retry the forgotten one: the floor rises past it, so the
            # retry is refused as stale_request instead of applied again.
            session.ack = max(session.ack, session.order[0] + 1)
            session.forget_oldest()

    def expire(self, session_id: str, now: int) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            return
        deadline = session.last_active + self.timeout_ms
        if deadline <= now:
            del self.sessions[session_id]
        else:  # used since the timer was set
            self.timers.schedule(deadline, SESSION, session_id)

    def dump(self) -> dict[str, Any]:
        return {
            sid: {
                "last_active": s.last_active,
                "ack": s.ack,
                "results": [[seq, s.results[seq]] for seq in sorted(s.results)],
            }
            for sid, s in sorted(self.sessions.items())
        }

    def load(self, image: dict[str, Any]) -> None:
        self.sessions = {}
        for sid, fields in image.items():
            session = self.sessions[sid] = Session(fields["last_active"], fields["ack"])
            for seq, result in fields["results"]:
                session.keep(seq, result)
            self.timers.schedule(fields["last_active"] + self.timeout_ms, SESSION, sid)

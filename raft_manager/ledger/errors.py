"""The one way the ledger says no: a LedgerError with a stable code and a message for people.

Theory of operation: a command that breaks a rule (a stale fencing token, a vote from someone
not eligible, a dependency that does not exist) raises LedgerError before it changes anything;
the ledger turns it into the result `{"ok": false, "error": code, "message": ...}`, which is the
same on every replica, so a rejection is as deterministic as a success.
"""

from __future__ import annotations

CODES = (
    "invalid_command",  # failed validation at the edge; never reaches the log
    "bad_entry",  # a log entry that does not decode (only a faulty proposer writes one)
    "not_found",
    "stale_token",  # renew / complete / fail by someone who no longer holds the lease
    "cycle",
    "unknown_dependency",
    "failed_dependency",
    "conflict",  # an id reused for different content, a state that forbids the change
    "agent_dead",
    "cas_failed",
    "not_eligible",
    "already_voted",
    "closed",
    "stale_request",  # a session request number older than what the client acknowledged
    "compacted",  # the change feed no longer holds that index
    "out_of_range",  # a feed acknowledgement of an entry not yet in the log
)


class LedgerError(Exception):
    def __init__(self, code: str, message: str) -> None:
        assert code in CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def result(self) -> dict[str, object]:
        return {"ok": False, "error": self.code, "message": self.message}

"""Helpers for the swarm ledger tests: a Feeder that applies commands to a Ledger as numbered log
entries stamped with a time the test chooses (ms), and small readers of its state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from raft_manager.ledger import Ledger, LedgerConfig, encode_entry, parse_command, parse_query

START_MS = 1_000_000  # the first entry's timestamp: room to go back in time


@dataclass(frozen=True)
class Entry:
    index: int
    term: int
    data: bytes


class Feeder:
    """One ledger and the log that feeds it: every call appends the next entry (index + 1) at
    the feeder's current time `ts`, which `at=` sets and `after=` (seconds) moves forward."""

    def __init__(self, config: LedgerConfig | None = None, *, term: int = 1) -> None:
        self.config = config or LedgerConfig()
        self.ledger = Ledger(self.config)
        self.index = 0
        self.term = term
        self.ts = START_MS

    def fork(self) -> Feeder:
        """A second replica: a fresh ledger restored from this one's snapshot, fed from here on
        by a log of its own that continues at the same index, term and time."""
        twin = Feeder(self.config, term=self.term)
        twin.ledger.restore(self.ledger.snapshot())
        twin.index, twin.ts = self.index, self.ts
        return twin

    # -- writing -------------------------------------------------------------------------------

    def move(self, at: int | None = None, after: float | None = None) -> None:
        if at is not None:
            self.ts = at
        if after is not None:
            self.ts += round(after * 1000)

    def encode(
        self, command: dict[str, Any], session: str = "", seq: int = 0, ack: int = 0
    ) -> bytes:
        return encode_entry(parse_command(command, self.config), self.ts, session, seq, ack)

    def apply_raw(self, data: bytes) -> dict[str, Any]:
        self.index += 1
        return self.ledger.apply(Entry(self.index, self.term, data))

    def do(
        self,
        command: dict[str, Any],
        *,
        at: int | None = None,
        after: float | None = None,
        session: str = "",
        seq: int = 0,
        ack: int = 0,
    ) -> dict[str, Any]:
        """Apply one command; its result, whatever it is."""
        self.move(at, after)
        return self.apply_raw(self.encode(command, session, seq, ack))

    def ok(self, command: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        result = self.do(command, **kwargs)
        assert result["ok"] is True, result
        return result

    def refused(self, command: dict[str, Any], code: str, **kwargs: Any) -> dict[str, Any]:
        result = self.do(command, **kwargs)
        assert result["ok"] is False and result["error"] == code, result
        assert isinstance(result["message"], str) and result["message"]
        return result

    def clock(self, *, at: int | None = None, after: float | None = None) -> dict[str, Any]:
        return self.ok({"op": "clock"}, at=at, after=after)

    # -- shorthands ----------------------------------------------------------------------------

    def submit(
        self, task_id: str | None = None, *, at: int | None = None, **fields: Any
    ) -> dict[str, Any]:
        return self.ok({"op": "task.submit", "id": task_id, **fields}, at=at)

    def claim(self, agent: str, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        return self.ok({"op": "task.claim", "agent": agent, **fields}, at=at)

    def register(self, agent: str, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        return self.ok({"op": "agent.register", "agent_id": agent, **fields}, at=at)

    def held(self, claim: dict[str, Any], agent: str) -> dict[str, Any]:
        """The fields that name a claim (for renew / complete / fail)."""
        return {"task_id": claim["task_id"], "agent": agent, "token": claim["fencing_token"]}

    # -- reading -------------------------------------------------------------------------------

    def query(self, raw: dict[str, Any]) -> dict[str, Any]:
        return self.ledger.query(parse_query(raw))

    def task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self.query({"query": "task.get", "task_id": task_id})["task"]
        return task

    def state(self, task_id: str) -> str:
        return str(self.task(task_id)["state"])

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        agents = self.query({"query": "agent.list"})["agents"]
        return next((a for a in agents if a["id"] == agent_id), None)

    def item(self, key: str, namespace: str = "default") -> dict[str, Any] | None:
        found = self.query({"query": "memory.get", "namespace": namespace, "key": key})
        item: dict[str, Any] | None = found["item"]
        return item

    def decision(self, decision_id: str) -> dict[str, Any]:
        found = self.query({"query": "decision.get", "decision_id": decision_id})
        decision: dict[str, Any] = found["decision"]
        return decision

    def events(self, from_index: int = 1, limit: int = 10_000) -> list[dict[str, Any]]:
        found = self.query({"query": "feed", "from_index": from_index, "limit": limit})
        events: list[dict[str, Any]] = found["events"]
        return events

    def kinds(self, from_index: int = 1) -> list[str]:
        return [event["kind"] for event in self.events(from_index)]


def image(ledger: Ledger) -> dict[str, Any]:
    """The ledger's snapshot, decoded."""
    decoded: dict[str, Any] = json.loads(ledger.snapshot())
    return decoded


def image_but_applied(ledger: Ledger) -> dict[str, Any]:
    """The decoded snapshot without `applied` (which every entry, even a bad one, moves)."""
    decoded = image(ledger)
    del decoded["applied"]
    return decoded

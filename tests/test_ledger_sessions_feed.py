"""Swarm ledger client sessions (exactly-once retries, acks, expiry), the change feed (order,
compaction, reset on restore), entries that do not decode (refused, changing nothing) and the
ledger clock (never runs backwards)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ledger_helpers import Feeder, image, image_but_applied

from raft_manager.ledger import Ledger, LedgerConfig, LedgerError

# -- sessions ----------------------------------------------------------------------------------


def test_a_retried_command_is_applied_once_and_answered_from_the_record() -> None:
    f = Feeder()
    first = f.do({"op": "task.submit"}, session="s", seq=1)
    assert first["task_id"] == f"task-{f.index}"
    retried = f.do({"op": "task.submit"}, session="s", seq=1, after=2)
    assert retried == first
    assert [t["id"] for t in f.query({"query": "task.list"})["tasks"]] == [first["task_id"]]


def test_a_retried_claim_returns_the_same_task_and_token_without_claiming_another() -> None:
    f = Feeder()
    f.submit("t1")
    f.submit("t2")
    claim = f.do({"op": "task.claim", "agent": "a"}, session="s", seq=7)
    assert f.do({"op": "task.claim", "agent": "a"}, session="s", seq=7) == claim
    assert f.state("t2") == "pending"
    assert f.do({"op": "task.claim", "agent": "a"}, session="s", seq=8)["task_id"] == "t2"


def test_a_refusal_is_recorded_too_and_a_retry_gets_the_same_refusal() -> None:
    f = Feeder()
    cancel = {"op": "task.cancel", "task_id": "t"}
    refused = f.do(cancel, session="s", seq=1)
    assert refused["error"] == "not_found"
    f.submit("t")
    assert f.do(cancel, session="s", seq=1) == refused
    assert f.state("t") == "pending"


def test_sessions_are_separate_and_commands_without_a_session_are_never_deduplicated() -> None:
    f = Feeder()
    a = f.do({"op": "task.submit"}, session="a", seq=1)
    b = f.do({"op": "task.submit"}, session="b", seq=1)
    assert a["task_id"] != b["task_id"]
    c = f.do({"op": "task.submit"})
    d = f.do({"op": "task.submit"})
    assert c["task_id"] != d["task_id"]
    assert set(image(f.ledger)["sessions"]) == {"a", "b"}


def test_results_below_the_ack_are_forgotten_and_such_a_request_is_stale() -> None:
    f = Feeder()
    one = f.do({"op": "task.submit"}, session="s", seq=1)
    two = f.do({"op": "task.submit"}, session="s", seq=2)
    f.do({"op": "task.submit"}, session="s", seq=3, ack=2)
    kept = image(f.ledger)["sessions"]["s"]
    assert kept["ack"] == 2 and [seq for seq, _ in kept["results"]] == [2, 3]
    before = image_but_applied(f.ledger)
    stale = f.do({"op": "task.submit"}, session="s", seq=1, ack=2)
    assert stale["ok"] is False and stale["error"] == "stale_request"
    assert image_but_applied(f.ledger) == before  # same entry time: nothing moved at all
    assert f.do({"op": "task.submit"}, session="s", seq=2, ack=2) == two
    tasks = [t["id"] for t in f.query({"query": "task.list"})["tasks"]]
    assert tasks.count(one["task_id"]) == 1 and len(tasks) == 3


def test_a_lower_ack_does_not_bring_back_forgotten_results() -> None:
    f = Feeder()
    f.do({"op": "clock"}, session="s", seq=1)
    f.do({"op": "clock"}, session="s", seq=2, ack=2)
    stale = f.do({"op": "clock"}, session="s", seq=1, ack=0)
    assert stale["error"] == "stale_request"
    assert image(f.ledger)["sessions"]["s"]["ack"] == 2


def test_a_session_keeps_at_most_max_results_the_oldest_going_first() -> None:
    f = Feeder(LedgerConfig(max_results_per_session=2))
    for seq in (1, 2, 3):
        f.do({"op": "clock"}, session="s", seq=seq)
    assert [seq for seq, _ in image(f.ledger)["sessions"]["s"]["results"]] == [2, 3]


def test_a_result_forgotten_for_room_is_never_applied_again() -> None:
    """More commands awaiting their answers than max_results: the oldest result goes, and the
    session's floor rises past it, so its retry is refused as stale_request, not run again
    (it once made a second task)."""
    f = Feeder(LedgerConfig(max_results_per_session=2))
    for seq in (1, 2, 3):  # none acknowledged: the client awaits all three
        f.ok({"op": "task.submit", "payload": {"marker": seq}}, session="s", seq=seq)
    f.refused({"op": "task.submit", "payload": {"marker": 1}}, "stale_request", session="s", seq=1)
    assert f.do({"op": "task.submit", "payload": {"marker": 3}}, session="s", seq=3)["ok"]
    tasks = f.query({"query": "task.list"})["tasks"]
    assert sorted(task["payload"]["marker"] for task in tasks) == [1, 2, 3]


def test_a_session_expires_after_the_timeout_by_entry_time() -> None:
    f = Feeder(LedgerConfig(session_timeout_seconds=60))
    first = f.do({"op": "task.submit"}, session="s", seq=1)
    f.do({"op": "clock"}, session="s", seq=2, after=30)  # activity keeps the session
    f.clock(after=59.999)
    assert f.do({"op": "task.submit"}, session="s", seq=1) == first
    f.clock(after=60)
    assert "s" not in image(f.ledger)["sessions"]
    again = f.do({"op": "task.submit"}, session="s", seq=1)
    assert again["ok"] is True and again["task_id"] != first["task_id"]  # applied anew


# -- the change feed ---------------------------------------------------------------------------


def test_the_feed_lists_every_change_in_apply_order_with_index_term_and_time() -> None:
    f = Feeder(term=3)
    f.submit("t", queue="q")
    f.term = 4
    claim = f.ok({"op": "task.claim", "agent": "a", "queues": ["q"]}, after=1)
    f.ok({"op": "task.complete", **f.held(claim, "a")}, after=1)
    f.clock(after=1)  # changes nothing: no event
    start = 1_000_000
    assert f.events() == [
        {
            "index": 1,
            "term": 3,
            "ts": start,
            "kind": "task.submitted",
            "data": {"task_id": "t", "queue": "q", "state": "pending"},
        },
        {
            "index": 2,
            "term": 4,
            "ts": start + 1000,
            "kind": "task.claimed",
            "data": {"task_id": "t", "agent": "a", "token": 2},
        },
        {
            "index": 3,
            "term": 4,
            "ts": start + 2000,
            "kind": "task.completed",
            "data": {"task_id": "t", "agent": "a"},
        },
    ]


def test_deadline_events_carry_the_index_and_time_of_the_entry_that_fired_them() -> None:
    f = Feeder()
    f.submit("t")
    f.claim("a", lease_seconds=10)
    f.ok({"op": "memory.put", "key": "k", "value": 1, "ttl_seconds": 5})
    f.ok({"op": "task.submit", "id": "u"}, after=60)
    kinds = [(e["index"], e["ts"], e["kind"]) for e in f.events(f.index)]
    # due deadlines fire earliest first (TTL at +5 s, then the lease at +10 s), then the command
    assert kinds == [
        (f.index, f.ts, "memory.expired"),
        (f.index, f.ts, "task.lease_expired"),
        (f.index, f.ts, "task.retry"),
        (f.index, f.ts, "task.submitted"),
    ]


def test_feed_reads_from_an_index_up_to_a_limit() -> None:
    f = Feeder()
    for name in ("a", "b", "c", "d"):
        f.submit(name)
    assert [e["index"] for e in f.events(from_index=2, limit=2)] == [2, 3]
    assert f.events(from_index=5) == []


def test_reading_before_what_the_feed_keeps_is_compacted() -> None:
    f = Feeder(LedgerConfig(feed_keep=3))
    for name in ("a", "b", "c", "d", "e"):
        f.submit(name)
    with pytest.raises(LedgerError) as compacted:
        f.events(from_index=2)
    assert compacted.value.code == "compacted"
    assert "starts at index 3" in compacted.value.message
    assert [e["data"]["task_id"] for e in f.events(from_index=3)] == ["c", "d", "e"]


def test_the_feed_starts_after_the_snapshot_on_a_restored_ledger() -> None:
    f = Feeder()
    f.submit("a")
    f.submit("b")
    restored = Ledger()
    restored.restore(f.ledger.snapshot())
    f.ledger = restored
    with pytest.raises(LedgerError) as compacted:
        f.events(from_index=1)
    assert compacted.value.code == "compacted"
    assert f.events(from_index=3) == []
    f.submit("c")
    assert [(e["index"], e["kind"]) for e in f.events(from_index=3)] == [(3, "task.submitted")]


# -- bad entries -------------------------------------------------------------------------------


def envelope(**fields: Any) -> bytes:
    base: dict[str, Any] = {"ts": 1_000_000, "s": "", "q": 0, "a": 0, "c": {"op": "clock"}}
    return json.dumps({**base, **fields}).encode()


BAD_ENTRIES = {
    "not json": b"this is not json",
    "not utf-8": b'{"ts": "\xff"}',
    "empty": b"",
    "a list": b"[1, 2]",
    "null": b"null",
    "no command": json.dumps({"ts": 1, "s": "", "q": 0, "a": 0}).encode(),
    "no timestamp": json.dumps({"s": "", "q": 0, "a": 0, "c": {"op": "clock"}}).encode(),
    "unknown op": envelope(c={"op": "task.steal", "task_id": "t"}),
    "command without op": envelope(c={"task_id": "t"}),
    "command is a list": envelope(c=["clock"]),
    "command is a string": envelope(c="clock"),
    "ts is a string": envelope(ts="1000000"),
    "ts is a float": envelope(ts=1_000_000.5),
    "ts is a bool": envelope(ts=True),
    "seq is a string": envelope(q="1"),
    "ack is null": envelope(a=None),
    "session is a number": envelope(s=5),
    "future ts but bad": envelope(ts=9_000_000_000, c={"op": "nope"}),
}


TOKEN = 4  # the fencing token "a" holds "t" under in busy_feeder


def busy_feeder() -> Feeder:
    """A ledger with a little of everything in it, every kind of deadline pending."""
    f = Feeder()
    f.register("a", heartbeat_timeout_seconds=100)
    f.submit("t")
    f.submit("waiting", depends_on=["t"])
    f.claim("a")
    f.ok({"op": "memory.put", "key": "k", "value": 1, "ttl_seconds": 50})
    f.ok({"op": "decision.propose", "id": "d", "question": "?", "voters": ["a", "b"]})
    f.do({"op": "clock"}, session="s", seq=1)
    return f


@pytest.mark.parametrize("data", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_an_entry_that_does_not_decode_is_refused_and_changes_nothing(data: bytes) -> None:
    f = busy_feeder()
    before, events = image_but_applied(f.ledger), f.events()
    result = f.apply_raw(data)
    assert result["ok"] is False and result["error"] == "bad_entry"
    assert f"entry {f.index}" in result["message"]
    assert image_but_applied(f.ledger) == before
    assert f.ledger.applied == f.index  # the log index is used up all the same
    assert f.events() == events


def command_entry(ts: int, command: dict[str, Any]) -> bytes:
    return envelope(ts=ts, c=command)


def test_a_claim_entry_missing_its_lease_loses_no_pending_task() -> None:
    f = busy_feeder()
    f.submit("free")
    before = image_but_applied(f.ledger)
    bad = f.apply_raw(
        command_entry(f.ts, {"op": "task.claim", "agent": "b", "queues": ["default"]})
    )
    assert bad["error"] == "bad_entry"
    assert image_but_applied(f.ledger) == before
    twin = f.fork()
    assert f.claim("b")["task_id"] == twin.claim("b")["task_id"] == "free"
    assert f.ledger.snapshot() == twin.ledger.snapshot()


@pytest.mark.parametrize(
    "command",
    [
        {"op": "task.complete", "task_id": "t", "agent": "a"},  # no token
        {"op": "task.complete", "task_id": "t", "agent": "a", "token": TOKEN},  # no result
        {"op": "task.cancel", "task_id": "t"},  # no reason
        {"op": "task.fail", "task_id": "t", "agent": "a", "token": TOKEN},  # no reason
        {"op": "task.renew", "task_id": "t", "agent": "a", "token": TOKEN},  # no lease_seconds
    ],
    ids=["complete-no-token", "complete-no-result", "cancel-no-reason", "fail-no-reason", "renew"],
)
def test_an_entry_missing_a_field_leaves_the_claimed_task_with_its_holder(
    command: dict[str, Any],
) -> None:
    f = busy_feeder()
    assert f.task("t")["token"] == TOKEN
    before = image_but_applied(f.ledger)
    assert f.apply_raw(command_entry(f.ts, command))["error"] == "bad_entry"
    assert image_but_applied(f.ledger) == before
    twin = f.fork()
    for replica in (f, twin):
        replica.ok({"op": "agent.deregister", "agent_id": "a"})  # hands back what "a" holds
        task = replica.task("t")
        assert (task["state"], task["error"]) == ("pending", "agent a deregistered")
    assert f.ledger.snapshot() == twin.ledger.snapshot()


def test_a_bad_command_in_a_session_is_answered_the_same_when_retried() -> None:
    f = Feeder()
    data = envelope(s="s", q=1, c={"op": "memory.put", "key": "k"})  # no value
    first = f.apply_raw(data)
    assert first["error"] == "bad_entry"
    assert f.apply_raw(data) == first


# -- the ledger clock --------------------------------------------------------------------------


def test_time_never_goes_backwards_when_a_later_entry_has_an_older_ts() -> None:
    f = Feeder()
    f.submit("t")
    late = f.ts
    assert f.clock(after=5)["now"] == late + 5000
    assert f.clock(at=late - 60_000)["now"] == late + 5000  # a leader with a slow clock
    claim = f.claim("a", lease_seconds=10)
    assert claim["lease_until"] == late + 15_000
    assert f.events(f.index)[0]["ts"] == late + 5000
    f.clock(at=late + 14_999)
    assert f.state("t") == "claimed"
    f.clock(at=late)
    assert f.state("t") == "claimed"
    f.clock(at=late + 15_000)
    assert f.state("t") == "pending"
    assert image(f.ledger)["now"] == late + 15_000

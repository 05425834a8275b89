"""CRDT operations ordered through the ledger (feed events, duplicates, conflicts, forgetting
ids on the ledger clock, snapshots) and feed cursors (forward only, no events, snapshots)."""

from __future__ import annotations

import json

import pytest
from ledger_helpers import Feeder, image

from raft_manager.ledger import Ledger, LedgerConfig, LedgerError, parse_command

OP = {"op": "crdt.op", "id": "op-1", "origin": "crdt-synchronizer.s1"}


def test_an_operation_gets_its_log_index_and_goes_on_the_feed_in_order() -> None:
    f = Feeder()
    first = f.ok({**OP, "operation": {"inc": "likes"}, "timestamp": {"s1": 3}})
    second = f.ok({**OP, "id": "op-2", "operation": ["add", "x"], "timestamp": 17})
    assert first == {"ok": True, "index": 1, "duplicate": False}
    assert second == {"ok": True, "index": 2, "duplicate": False}
    events = f.events()
    assert [(e["index"], e["kind"]) for e in events] == [
        (1, "crdt.operation"),
        (2, "crdt.operation"),
    ]
    assert events[0]["data"] == {
        "id": "op-1",
        "origin": "crdt-synchronizer.s1",
        "operation": {"inc": "likes"},
        "timestamp": {"s1": 3},
    }


def test_the_same_operation_again_answers_its_first_index_and_changes_nothing() -> None:
    f = Feeder()
    f.ok({**OP, "operation": {"inc": 1}, "timestamp": 5})
    f.clock(after=1)
    before = image(f.ledger)["crdt"]
    again = f.ok({**OP, "operation": {"inc": 1}, "timestamp": 5, "origin": "elsewhere"})
    assert again == {"ok": True, "index": 1, "duplicate": True}
    assert len(f.events()) == 1 and image(f.ledger)["crdt"] == before
    conflict = f.refused({**OP, "operation": {"inc": 2}, "timestamp": 5}, "conflict")
    assert "op-1" in conflict["message"] and len(f.events()) == 1


def test_an_operation_id_is_forgotten_after_the_dedupe_window_of_ledger_time() -> None:
    f = Feeder(LedgerConfig(crdt_dedupe_seconds=60))
    f.ok({**OP, "operation": 1})
    f.clock(after=59.999)
    assert f.ok({**OP, "operation": 1})["duplicate"] is True
    f.clock(after=0.002)
    assert image(f.ledger)["crdt"] == []
    assert f.ok({**OP, "operation": 1}) == {"ok": True, "index": f.index, "duplicate": False}


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ({"op": "crdt.op", "operation": 1}, "id: Field required"),
        ({"op": "crdt.op", "id": "x"}, "operation: Field required"),
        ({"op": "crdt.op", "id": "x", "operation": None}, "an operation is required"),
        ({"op": "crdt.op", "id": "bad id", "operation": 1}, "id: String should match"),
        ({"op": "crdt.op", "id": "x", "operation": "a" * 100}, "more than the 64 allowed"),
        ({"op": "crdt.op", "id": "x", "operation": 1, "extra": 1}, "extra: Extra inputs"),
        ({"op": "cursor.set", "name": "c", "index": 0}, "index: Input should be greater"),
        ({"op": "cursor.set", "name": "c", "index": 1, "position": -1}, "position: Input"),
        ({"op": "cursor.set", "index": 1}, "name: Field required"),
    ],
)
def test_bad_commands_are_refused_at_the_edge(command: dict[str, object], problem: str) -> None:
    with pytest.raises(LedgerError) as refused:
        parse_command(command, LedgerConfig(max_payload_bytes=64))
    assert refused.value.code == "invalid_command" and problem in refused.value.message


def test_a_cursor_only_moves_forward_and_emits_no_event() -> None:
    f = Feeder()
    for _ in range(10):  # entries to acknowledge
        f.clock()
    cursor = {"op": "cursor.set", "name": "crdt-synchronizer"}
    assert f.query({"query": "cursor.get", "name": "crdt-synchronizer"})["cursor"] is None
    moved = f.ok({**cursor, "index": 7, "position": 1})
    assert moved == {"ok": True, "cursor": {"index": 7, "position": 1}, "moved": True}
    for index, position in ((7, 1), (7, 0), (3, 5)):
        stay = f.ok({**cursor, "index": index, "position": position})
        assert stay == {"ok": True, "cursor": {"index": 7, "position": 1}, "moved": False}
    assert f.ok({**cursor, "index": 7, "position": 2})["cursor"] == {"index": 7, "position": 2}
    assert f.ok({**cursor, "index": 9})["cursor"] == {"index": 9, "position": 0}
    assert f.ok({**cursor, "name": "other", "index": 1})["moved"] is True
    assert f.events() == []
    assert image(f.ledger)["cursors"] == {"crdt-synchronizer": [9, 0], "other": [1, 0]}


def test_an_acknowledgement_of_an_entry_not_yet_in_the_log_is_refused_and_changes_nothing() -> None:
    """An event can only be acknowledged once it was sent, so its entry precedes the one
    acknowledging it; one at or past that index (a bogus or corrupted acknowledgement) would
    make the publisher skip every event up to it, silently."""
    f = Feeder()
    cursor = {"op": "cursor.set", "name": "crdt-synchronizer"}
    f.clock()
    f.ok({**cursor, "index": 1})
    for index in (3, 5, 1_000_000_000):  # entries 3, 4, 5 themselves, or past them
        refused = f.refused({**cursor, "index": index}, "out_of_range")
        assert f"entry {f.index}" in refused["message"]
    assert f.query({"query": "cursor.get", "name": "crdt-synchronizer"})["cursor"] == {
        "index": 1,
        "position": 0,
    }


def test_operations_and_cursors_survive_a_snapshot_and_replicas_agree_byte_for_byte() -> None:
    f = Feeder(LedgerConfig(crdt_dedupe_seconds=10))
    f.ok({**OP, "operation": {"set": "a"}})
    f.ok({"op": "cursor.set", "name": "c", "index": 1})
    twin = f.fork()
    assert twin.ledger.snapshot() == f.ledger.snapshot()
    for replica in (f, twin):
        assert replica.ok({**OP, "operation": {"set": "a"}})["duplicate"] is True
        replica.refused({**OP, "operation": {"set": "b"}}, "conflict")
        replica.clock(after=11)  # the restored replica rebuilt the timer that forgets op-1
        replica.ok({**OP, "id": "op-2", "operation": 2})
        assert replica.query({"query": "cursor.get", "name": "c"})["cursor"]["index"] == 1
    assert twin.ledger.snapshot() == f.ledger.snapshot()
    assert [e["index"] for e in twin.events(f.index)] == [f.index]


def test_a_version_1_snapshot_restores_with_no_operations_and_no_cursors() -> None:
    f = Feeder()
    f.submit("t1")
    old = image(f.ledger)
    old["version"] = 1
    del old["crdt"], old["cursors"]
    restored = Ledger()
    restored.restore(json.dumps(old).encode())
    assert image(restored)["crdt"] == [] and image(restored)["cursors"] == {}
    assert image(restored)["tasks"] == old["tasks"]

"""Unit tests for the simulated Network: seeded loss / duplication / delay, partitions, healing."""

from __future__ import annotations

import random

import pytest

from raft_manager.core import HeartbeatResponse, Message
from raft_manager.sim.network import LinkFaults, Network

NODES = ("n1", "n2", "n3")


def msg(frm: str, to: str, tag: int) -> Message:
    return HeartbeatResponse(frm=frm, to=to, term=1, round=tag)


def tag(m: Message) -> int:
    assert isinstance(m, HeartbeatResponse)
    return m.round


def drain(network: Network, until: int) -> list[tuple[int, Message]]:
    """Everything delivered at each tick from 0 to `until`, with its delivery tick."""
    out = []
    for now in range(until + 1):
        while (m := network.next_due(now)) is not None:
            out.append((now, m))
    return out


def run(seed: int, faults: LinkFaults, count: int = 200) -> tuple[list[tuple[int, Message]], int]:
    network = Network(random.Random(seed), faults)
    for k in range(count):
        network.send(msg(NODES[k % 3], NODES[(k + 1) % 3], k), now=k // 10)
    return drain(network, 200), network.dropped


CHAOS = LinkFaults(
    drop_rate=0.2,
    duplicate_rate=0.2,
    min_delay=1,
    max_delay=4,
    long_delay_rate=0.1,
    long_delay=15,
)


def test_same_seed_same_deliveries() -> None:
    assert run(42, CHAOS) == run(42, CHAOS)


def test_different_seeds_differ() -> None:
    assert run(1, CHAOS) != run(2, CHAOS)


def test_no_faults_delivers_everything_once_within_the_delay() -> None:
    network = Network(random.Random(0), LinkFaults(min_delay=2, max_delay=3))
    for k in range(50):
        network.send(msg("n1", "n2", k), now=10)
    assert len(network) == 50
    assert network.next_due(11) is None  # nothing arrives before the minimum delay
    delivered = drain(network, 20)
    assert sorted(tag(m) for _, m in delivered) == list(range(50))
    assert all(12 <= when <= 13 for when, _ in delivered)
    assert (network.sent, network.dropped, len(network)) == (50, 0, 0)


def test_drop_rate_one_drops_everything_at_send() -> None:
    network = Network(random.Random(0), LinkFaults(drop_rate=1.0))
    for k in range(20):
        network.send(msg("n1", "n2", k), now=0)
    assert len(network) == 0
    assert (network.sent, network.dropped) == (20, 20)
    assert drain(network, 10) == []


def test_duplicate_rate_one_delivers_every_message_twice() -> None:
    network = Network(random.Random(0), LinkFaults(duplicate_rate=1.0))
    for k in range(20):
        network.send(msg("n1", "n2", k), now=0)
    delivered = [tag(m) for _, m in drain(network, 10)]
    assert sorted(delivered) == sorted(list(range(20)) * 2)


@pytest.mark.parametrize("seed", range(5))
def test_drop_and_duplicate_rates_are_roughly_honoured(seed: int) -> None:
    network = Network(random.Random(seed), LinkFaults(drop_rate=0.3, duplicate_rate=0.5))
    for k in range(2000):
        network.send(msg("n1", "n2", k), now=0)
    assert 450 < network.dropped < 750
    survivors = 2000 - network.dropped
    assert 1.35 * survivors < len(network) < 1.65 * survivors


def test_long_delays_reorder_messages() -> None:
    faults = LinkFaults(min_delay=1, max_delay=1, long_delay_rate=0.5, long_delay=30)
    network = Network(random.Random(3), faults)
    for k in range(100):
        network.send(msg("n1", "n2", k), now=0)
    delivered = drain(network, 40)
    rounds = [tag(m) for _, m in delivered]
    assert sorted(rounds) == list(range(100))
    assert rounds != sorted(rounds)
    assert max(when for when, _ in delivered) > 1
    assert all(1 <= when <= 30 for when, _ in delivered)


def test_same_tick_messages_keep_their_send_order() -> None:
    network = Network(random.Random(0), LinkFaults(min_delay=1, max_delay=1))
    for k in range(10):
        network.send(msg("n1", "n2", k), now=0)
    assert [tag(m) for _, m in drain(network, 1)] == list(range(10))


def test_partition_drops_messages_already_in_flight_at_delivery() -> None:
    network = Network(random.Random(0))
    network.send(msg("n1", "n2", 1), now=0)
    network.send(msg("n2", "n1", 2), now=0)
    network.send(msg("n1", "n3", 3), now=0)
    network.partition(["n1"], ["n2", "n3"])  # after sending: in-flight messages are cut too
    assert len(network) == 3  # the cut applies at delivery, not at send
    assert drain(network, 5) == []
    assert network.dropped == 3


def test_partition_keeps_links_inside_a_group() -> None:
    network = Network(random.Random(0))
    network.partition(["n1"], ["n2", "n3"])
    network.send(msg("n2", "n3", 1), now=0)
    network.send(msg("n3", "n2", 2), now=0)
    network.send(msg("n2", "n1", 3), now=0)
    delivered = sorted(tag(m) for _, m in drain(network, 5))
    assert delivered == [1, 2]


def test_asymmetric_cut_blocks_one_direction_only() -> None:
    network = Network(random.Random(0))
    network.cut("n1", "n2")
    network.send(msg("n1", "n2", 1), now=0)
    network.send(msg("n2", "n1", 2), now=0)
    network.send(msg("n1", "n3", 3), now=0)
    delivered = sorted(tag(m) for _, m in drain(network, 5))
    assert delivered == [2, 3]
    assert network.dropped == 1


def test_isolate_cuts_a_node_off_in_both_directions() -> None:
    network = Network(random.Random(0))
    network.isolate("n2", NODES)
    for k, (a, b) in enumerate([("n1", "n2"), ("n2", "n3"), ("n3", "n2"), ("n1", "n3")]):
        network.send(msg(a, b, k), now=0)
    delivered = [(m.frm, m.to) for _, m in drain(network, 5)]
    assert delivered == [("n1", "n3")]


def test_heal_restores_every_link_for_later_deliveries() -> None:
    network = Network(random.Random(0), LinkFaults(min_delay=3, max_delay=3))
    network.partition(["n1"], ["n2", "n3"])
    network.cut("n3", "n2")
    network.send(msg("n1", "n2", 1), now=0)
    network.send(msg("n3", "n2", 2), now=0)
    assert drain(network, 1) == []
    network.heal()  # healed before delivery: the messages still in flight get through
    assert network.blocked == set()
    delivered = sorted(tag(m) for _, m in drain(network, 5))
    assert delivered == [1, 2]


def test_clear_loses_everything_in_flight() -> None:
    network = Network(random.Random(0))
    for k in range(5):
        network.send(msg("n1", "n2", k), now=0)
    network.clear()
    assert len(network) == 0
    assert network.dropped == 5
    assert drain(network, 5) == []

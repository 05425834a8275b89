"""The Redis-streams bus against a real redis-server: consumer groups, replies, redelivery, dead
letters, deduplication, trimming, a Redis restart, ACL users."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import redis
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream
from bus_helpers import (
    CLUSTER,
    Item,
    Recorder,
    consuming,
    dead_letters,
    make_bus,
    pending_count,
    settings,
    wait_until,
)
from conftest import RedisServer
from tls_helpers import CertificateAuthority

from raft_manager.adapters import BusAuthError, BusUnavailable, Handlers, request_stream
from raft_manager.adapters.streams import done_set, reply_stream
from raft_manager.server.config import AdaptersConfig, ConfigError, load_config

ROLE = "quorum-manager"


def _persist_on_shutdown(server: RedisServer) -> None:
    """The fixture runs Redis without persistence; with a save point, SIGTERM writes an RDB
    file that the restarted server loads (streams, groups and pending lists included)."""
    raw = redis.Redis.from_url(server.url)
    raw.config_set("save", "3600 1")
    raw.close()


async def test_a_group_shares_the_work_and_another_group_gets_everything(
    redis_server: RedisServer,
) -> None:
    async with (
        make_bus(redis_server.url, "sender") as sender,
        make_bus(redis_server.url, "worker") as worker,
    ):
        first, second, audit = Recorder(), Recorder(), Recorder()
        stream = request_stream(CLUSTER, ROLE)
        members = [
            worker.serve(ROLE, first.handlers, name="w1"),
            worker.serve(ROLE, second.handlers, name="w2"),
            worker.consumer(stream, "audit", audit.handlers, recipient=ROLE),
        ]
        async with consuming(*members):
            for n in range(300):
                await sender.send(ROLE, "test.item", Item(n=n))
            await wait_until(lambda: len(first.applied) + len(second.applied) == 300)
            await wait_until(lambda: len(audit.applied) == 300)
        assert sorted(first.applied + second.applied) == list(range(300))  # each exactly once
        assert sorted(audit.applied) == list(range(300))
        assert pending_count(redis_server.url, stream, ROLE) == 0
        assert pending_count(redis_server.url, stream, "audit") == 0
        assert sender.metrics.value("published") == 300


async def test_a_request_gets_its_reply_through_the_requesters_reply_stream(
    redis_server: RedisServer,
) -> None:
    async with (
        make_bus(redis_server.url, "asker") as asker,
        make_bus(redis_server.url, "answerer") as answerer,
    ):
        recorder = Recorder(reply=True)
        async with consuming(asker.reply_consumer(), answerer.serve(ROLE, recorder.handlers)):
            replies = [
                await asker.request(ROLE, "test.item", Item(n=n), timeout=5) for n in range(20)
            ]
        assert [reply.payload for reply in replies] == [{"n": n} for n in range(20)]
        assert all(reply.type == "test.done" and reply.sender == "answerer" for reply in replies)
        assert all(reply.recipient == "asker" for reply in replies)
        assert len({reply.correlation_id for reply in replies}) == 20
        # Anyone may write to a reply stream: what arrives there is counted under one label,
        # not under the types it names (a label per junk type would grow without bound).
        for n in range(5):
            await answerer.publish(
                reply_stream(CLUSTER, "asker"),
                answerer.envelope(f"junk.kind{n}", recipient="asker", payload={}),
            )
        before = asker.metrics.value("handled", type="reply")
        async with consuming(asker.reply_consumer()):
            await wait_until(lambda: asker.metrics.value("handled", type="reply") == before + 5)
        assert asker.metrics.value("handled", type="test.done") == 0
        assert asker.metrics.value("handled", type="junk.kind0") == 0


async def test_a_failing_handler_is_retried_after_the_claim_timeout_then_dead_lettered(
    redis_server: RedisServer,
) -> None:
    # item 0 always fails; item 1 fails twice then succeeds; the others succeed at once
    recorder = Recorder(fail=lambda n: {0: 99, 1: 2}.get(n, 0))
    stream = request_stream(CLUSTER, ROLE)
    async with make_bus(redis_server.url) as bus:
        async with consuming(bus.serve(ROLE, recorder.handlers)):
            started = anyio.current_time()
            for n in range(5):
                await bus.send(ROLE, "test.item", Item(n=n))
            await wait_until(lambda: sorted(recorder.applied) == [1, 2, 3, 4])
            await wait_until(lambda: len(dead_letters(redis_server.url, stream)) == 1)
            elapsed = anyio.current_time() - started
        assert recorder.attempts[0] == 3  # dead_letter_after = 3 deliveries, then no more
        assert recorder.attempts[1] == 3 and recorder.applied.count(1) == 1
        assert elapsed >= 2 * 0.3  # two redeliveries, each after the 300 ms claim timeout
        [dead] = dead_letters(redis_server.url, stream)
        assert dead["reason"] == "too-many-deliveries" and dead["attempts"] == "3"
        assert "item 0 fails on attempt 3" in dead["detail"]
        assert pending_count(redis_server.url, stream, ROLE) == 0
        assert bus.metrics.value("handler_failures", type="test.item") == 5
        assert bus.metrics.value("dead_lettered", reason="too-many-deliveries") == 1


async def test_a_slow_failure_first_in_a_batch_does_not_hold_back_the_entries_behind_it(
    redis_server: RedisServer,
) -> None:
    """The first handler of a batch fails after the flush interval (a quarter of the claim
    timeout) has passed, so the flush before the second has nothing to acknowledge: it only
    renews the claim on the rest (an XACK of no ids once made Redis refuse the whole flush, and
    the entries behind were redelivered until dead-lettered, never handled)."""
    config = settings(redis_server.url, claim_idle_ms=400, handler_timeout_s=0.19)
    attempts: list[int] = []
    applied: list[int] = []

    async def handle(_envelope: object, item: Item) -> None:
        attempts.append(item.n)
        if item.n == 1:
            await anyio.sleep(0.15)  # past the 0.1 s flush interval, then it fails
            raise RuntimeError("a flaky dependency")
        applied.append(item.n)

    handlers = Handlers()
    handlers.add("test.item", Item, handle)  # type: ignore[arg-type]
    stream = request_stream(CLUSTER, ROLE)
    async with make_bus(redis_server.url, config=config) as bus:
        for n in (1, 2, 3):
            await bus.send(ROLE, "test.item", Item(n=n))
        consumer = bus.consumer(stream, ROLE, handlers, recipient=ROLE, read_count=3)
        async with consuming(consumer):
            await wait_until(lambda: len(dead_letters(redis_server.url, stream)) == 1)
    assert sorted(applied) == [2, 3] and attempts.count(2) == attempts.count(3) == 1
    assert attempts.count(1) == 3  # dead_letter_after = 3
    [dead] = dead_letters(redis_server.url, stream)
    assert dead["reason"] == "too-many-deliveries" and "flaky" in dead["detail"]
    assert bus.metrics.value("redis_errors") == 0


async def test_slow_handlers_in_a_big_batch_are_not_run_twice_by_two_members(
    redis_server: RedisServer,
) -> None:
    """One member reads 12 entries at once and each takes 70 ms: every quarter of the claim
    timeout it acknowledges what it handled and renews its claim on the rest, so the other
    member never reclaims an entry that is still waiting or being handled."""
    runs: list[int] = []

    async def slow(_envelope: object, item: Item) -> None:
        runs.append(item.n)
        await anyio.sleep(0.07)

    handlers = Handlers()
    handlers.add("test.item", Item, slow)  # type: ignore[arg-type]
    async with make_bus(redis_server.url) as bus:
        for n in range(12):
            await bus.send(ROLE, "test.item", Item(n=n))
        async with consuming(
            bus.serve(ROLE, handlers, name="a"), bus.serve(ROLE, handlers, name="b")
        ):
            await wait_until(lambda: len(set(runs)) == 12, 10)
            await anyio.sleep(0.5)  # time enough for a wrong redelivery to show
    assert sorted(runs) == list(range(12))


async def test_unknown_types_and_bad_payloads_are_dead_lettered_at_once(
    redis_server: RedisServer,
) -> None:
    recorder = Recorder()
    stream = request_stream(CLUSTER, ROLE)
    async with make_bus(redis_server.url) as bus:
        async with consuming(bus.serve(ROLE, recorder.handlers)):
            await bus.send(ROLE, "test.unheard_of", {"n": 1})
            await bus.send(ROLE, "test.item", {"n": "not a number"})
            await bus.send(ROLE, "test.item", {"n": 7})
            await wait_until(lambda: recorder.applied == [7])
            await wait_until(lambda: len(dead_letters(redis_server.url, stream)) == 2)
        reasons = [dead["reason"] for dead in dead_letters(redis_server.url, stream)]
        assert reasons == ["unknown-type", "bad-payload"]
        assert recorder.attempts == {7: 1}


def _losing_redis_after_item_0(recorder: Recorder, redis_server: RedisServer) -> Handlers:
    """The recorder's handler, stopping Redis right after it applies item 0."""

    async def handle_then_lose_redis(envelope: object, item: Item) -> None:
        await recorder.handle(envelope, item)  # type: ignore[arg-type]
        if item.n == 0:
            await anyio.to_thread.run_sync(redis_server.stop)

    handlers = Handlers()
    handlers.add("test.item", Item, handle_then_lose_redis)
    return handlers


async def test_a_handled_message_whose_ack_was_lost_is_not_applied_again(
    redis_server: RedisServer,
) -> None:
    """Redis goes away between the handler's effect and the acknowledgement; the entry is
    redelivered after the restart and acknowledged without a second run."""
    _persist_on_shutdown(redis_server)
    stream = request_stream(CLUSTER, ROLE)
    recorder = Recorder()
    handlers = _losing_redis_after_item_0(recorder, redis_server)
    async with make_bus(redis_server.url) as bus:
        await bus.send(ROLE, "test.item", Item(n=0))
        async with consuming(bus.serve(ROLE, handlers)):
            await wait_until(lambda: recorder.applied == [0])
            await anyio.sleep(0.3)  # the acknowledgement fails meanwhile
            await anyio.to_thread.run_sync(redis_server.start)
            await wait_until(lambda: pending_count(redis_server.url, stream, ROLE) == 0, 10)
            await bus.send(ROLE, "test.item", Item(n=1))
            await wait_until(lambda: recorder.applied == [0, 1])
        assert recorder.attempts[0] == 1
        assert bus.metrics.value("duplicates") == 1
        assert bus.metrics.value("redis_errors") >= 1


async def test_a_second_consumer_of_one_bus_does_not_apply_again_what_the_first_handled(
    redis_server: RedisServer,
) -> None:
    """As above, but the entry is redelivered to another consumer of the same bus (a node runs
    several on its shared stream): the memory of what was handled is the bus's, per group, so
    it is acknowledged without a second run."""
    _persist_on_shutdown(redis_server)
    stream = request_stream(CLUSTER, ROLE)
    recorder = Recorder()
    lossy = _losing_redis_after_item_0(recorder, redis_server)
    async with make_bus(redis_server.url) as bus:
        await bus.send(ROLE, "test.item", Item(n=0))
        async with consuming(bus.serve(ROLE, lossy, name="first")):
            await wait_until(lambda: recorder.applied == [0])
            await anyio.sleep(0.3)  # the acknowledgement fails meanwhile
        await anyio.to_thread.run_sync(redis_server.start)
        async with consuming(bus.serve(ROLE, recorder.handlers, name="second")):
            await wait_until(lambda: pending_count(redis_server.url, stream, ROLE) == 0, 10)
    assert recorder.applied == [0]
    assert bus.metrics.value("duplicates") == 1


async def test_another_member_does_not_apply_an_envelope_the_group_already_handled(
    redis_server: RedisServer,
) -> None:
    """A second stream entry carrying a handled envelope (a retried XADD, a replay) reaching a
    member that never saw it: the group's record in Redis stops it."""
    stream = request_stream(CLUSTER, ROLE)
    first, second = Recorder(), Recorder()
    async with make_bus(redis_server.url, "sender") as sender:
        envelope = sender.envelope("test.item", recipient=ROLE, payload=Item(n=5))
        one = make_bus(redis_server.url, "one")
        async with one, consuming(one.serve(ROLE, first.handlers)):
            await sender.publish(stream, envelope)
            await wait_until(lambda: first.applied == [5])
        raw = redis.Redis.from_url(redis_server.url)
        assert raw.zscore(done_set(stream, ROLE), envelope.id) is not None
        assert raw.pttl(done_set(stream, ROLE)) > 0  # the record expires
        raw.close()
        two = make_bus(redis_server.url, "two")  # a fresh process's memory
        async with two, consuming(two.serve(ROLE, second.handlers)):
            await sender.publish(stream, envelope)
            await wait_until(lambda: two.metrics.value("duplicates") == 1)
        assert second.applied == []
        assert pending_count(redis_server.url, stream, ROLE) == 0


async def test_an_entry_trimmed_while_pending_is_recorded_as_a_dead_letter(
    redis_server: RedisServer,
) -> None:
    stream = request_stream(CLUSTER, ROLE)
    recorder = Recorder(fail=lambda n: 99 if n == 0 else 0)
    config = settings(redis_server.url, stream_maxlen=100, dead_letter_after=10)
    async with make_bus(redis_server.url, config=config) as bus:
        async with consuming(bus.serve(ROLE, recorder.handlers)):
            for n in range(400):  # item 0 fails and waits for redelivery; MAXLEN ~ trims it away
                await bus.send(ROLE, "test.item", Item(n=n))
            await wait_until(
                lambda: (
                    len(dead_letters(redis_server.url, stream)) == 1
                    and len(recorder.applied) == 399
                )
            )
        [dead] = dead_letters(redis_server.url, stream)
        assert dead["reason"] == "trimmed" and recorder.attempts[0] >= 1
        assert sorted(recorder.applied) == list(range(1, 400))
        assert pending_count(redis_server.url, stream, ROLE) == 0


async def test_maxlen_bounds_every_stream(redis_server: RedisServer) -> None:
    stream = request_stream(CLUSTER, ROLE)
    async with make_bus(
        redis_server.url, config=settings(redis_server.url, stream_maxlen=200)
    ) as bus:
        for n in range(2000):
            await bus.send(ROLE, "test.item", Item(n=n))
    raw = redis.Redis.from_url(redis_server.url)
    length = raw.xlen(stream)
    [(_, newest)] = raw.xrevrange(stream, count=1)
    raw.close()
    assert 200 <= length <= 300  # MAXLEN ~ trims whole nodes of 100 entries
    assert b'"n":1999' in newest[b"envelope"]


async def test_a_consumer_rides_out_a_redis_restart_losing_and_repeating_nothing(
    redis_server: RedisServer,
) -> None:
    _persist_on_shutdown(redis_server)
    stream = request_stream(CLUSTER, ROLE)
    recorder = Recorder()
    async with (
        make_bus(redis_server.url, "sender") as sender,
        make_bus(redis_server.url, "worker") as worker,
    ):
        async with consuming(worker.serve(ROLE, recorder.handlers)):

            async def restart() -> None:
                await wait_until(lambda: len(recorder.applied) >= 100)
                await anyio.to_thread.run_sync(redis_server.stop)
                await anyio.sleep(0.5)
                await anyio.to_thread.run_sync(redis_server.start)

            async with anyio.create_task_group() as group:
                group.start_soon(restart)
                for n in range(400):  # publishing retries through the outage
                    await sender.send(ROLE, "test.item", Item(n=n))
                    await anyio.sleep(0.002)
            await wait_until(lambda: len(recorder.applied) >= 400, 15)
            await wait_until(lambda: pending_count(redis_server.url, stream, ROLE) == 0, 10)
        assert sorted(recorder.applied) == list(range(400))  # nothing lost, nothing twice
        assert worker.metrics.value("redis_errors") >= 1
        assert sender.metrics.value("redis_errors") >= 1


def _acl(server: RedisServer, *rules: str) -> None:
    raw = redis.Redis.from_url(server.url)
    raw.execute_command("ACL", "SETUSER", "swarm", "reset", "on", ">right-pw", *rules)
    raw.close()


async def test_an_acl_user_works_and_wrong_credentials_are_refused_clearly(
    redis_server: RedisServer,
) -> None:
    _acl(
        redis_server,
        "~bus:*",
        "+@stream",
        "+@sortedset",
        "+@transaction",
        "+@connection",
        "+pexpire",
    )
    base = f"127.0.0.1:{redis_server.port}/0"
    recorder = Recorder(reply=True)
    user_url = f"redis://swarm:right-pw@{base}"
    asker, answerer = make_bus(user_url, "asker"), make_bus(user_url, "answerer")
    async with (
        asker,
        answerer,
        consuming(asker.reply_consumer(), answerer.serve(ROLE, recorder.handlers)),
    ):
        reply = await asker.request(ROLE, "test.item", Item(n=3), timeout=5)
    assert reply.payload == {"n": 3}

    with pytest.raises(BusAuthError) as refused:
        async with make_bus(f"redis://swarm:wrong-pw@{base}"):
            pass
    message = str(refused.value)
    assert "refused the credentials" in message and "'swarm'" in message
    assert "wrong-pw" not in message and "swarm:***@" in message

    bus = make_bus(f"redis://swarm:wrong-pw@{base}")  # a consumer does not retry it forever
    with anyio.fail_after(5), pytest.raises(BusAuthError):
        await bus.serve(ROLE, recorder.handlers).run()
    await bus.aclose()


async def test_an_acl_user_without_the_bus_keys_gets_a_clear_error(
    redis_server: RedisServer,
) -> None:
    _acl(redis_server, "~other:*", "+@all")
    url = f"redis://swarm:right-pw@127.0.0.1:{redis_server.port}/0"
    async with make_bus(url) as bus:
        with pytest.raises(BusAuthError, match="denied"):
            await bus.send(ROLE, "test.item", Item(n=1))


@asynccontextmanager
async def tls_terminator(context: ssl.SSLContext, target_port: int) -> AsyncIterator[int]:
    """A TLS front for the plain test Redis (its binary is built without TLS): what the bus
    sees is a rediss:// server."""

    async def pump(source: ByteStream, sink: ByteStream, both: anyio.CancelScope) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            async for chunk in source:
                await sink.send(chunk)
        both.cancel()  # one side closed: close the other

    async def serve(client: ByteStream) -> None:
        async with client:
            try:
                wrapped = await TLSStream.wrap(
                    client, server_side=True, ssl_context=context, standard_compatible=False
                )
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                return
            upstream = await anyio.connect_tcp("127.0.0.1", target_port)
            async with upstream, anyio.create_task_group() as pair:
                pair.start_soon(pump, wrapped, upstream, pair.cancel_scope)
                pair.start_soon(pump, upstream, wrapped, pair.cancel_scope)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        group.cancel_scope.cancel()


async def test_rediss_urls_give_the_bus_tls(redis_server: RedisServer, tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "pki", "redis-ca")
    issued = authority.issue("redis")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(issued.cert, issued.key)
    recorder = Recorder(reply=True)
    async with tls_terminator(server, redis_server.port) as port:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={authority.cert}"
        asker, answerer = make_bus(url, "asker"), make_bus(url, "answerer")
        async with (
            asker,
            answerer,
            consuming(asker.reply_consumer(), answerer.serve(ROLE, recorder.handlers)),
        ):
            reply = await asker.request(ROLE, "test.item", Item(n=4), timeout=5)
        assert reply.payload == {"n": 4}
        stranger = CertificateAuthority(tmp_path / "other", "other-ca")
        untrusting = make_bus(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={stranger.cert}")
        with pytest.raises(BusUnavailable, match="certificate verify failed"):
            await untrusting.connect()
        await untrusting.aclose()


def test_the_adapters_config_is_validated_with_clear_errors(tmp_path: Path) -> None:
    assert AdaptersConfig().peers == []
    for changes, problem in (
        ({"redis_url": "http://x"}, "redis_url must start with"),
        ({"peers": ["quorum-manager", "quorum-manager"]}, "named twice"),
        ({"peers": ["nobody"]}, "quorum-manager"),
        ({"claim_idle_ms": 1000, "handler_timeout_s": 0.5}, "claim_idle_ms must exceed twice"),
        ({"replay_window_s": 60, "dedupe_ttl_s": 100}, "twice replay_window_s"),
        ({"dead_letter_after": 0}, "dead_letter_after"),
        ({"max_envelope_bytes": 10}, "max_envelope_bytes"),
    ):
        with pytest.raises(ValueError, match=problem):
            AdaptersConfig(**changes)
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[nodes.n1]\naddress = "127.0.0.1:7001"\nclient_address = "127.0.0.1:8001"\n'
        'data_dir = "d"\n[adapters]\nstream_maxlen = 5\n'
    )
    with pytest.raises(ConfigError, match=r"adapters\.stream_maxlen"):
        load_config(path)

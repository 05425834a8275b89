"""The bus's security: keys and key files, the canonical form and signatures, every rejection
reason end to end against a real Redis, and key rotation under traffic."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from bus_helpers import CLUSTER, Item, Recorder, consuming, dead_letters, make_bus, settings
from conftest import RedisServer

from raft_manager.adapters import (
    Envelope,
    Handlers,
    Rejected,
    Rejection,
    SigningError,
    Verifier,
    canonical_bytes,
    request_stream,
    sign,
)
from raft_manager.adapters.envelope import MAX_NESTING, EnvelopeError, parse_envelope
from raft_manager.transport.keys import Key, KeyFileError, KeyRing, load_key_file

ROLE = "security-manager"
SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(32, 64))
DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _ring(*keys: Key) -> KeyRing:
    return KeyRing(list(keys))


# Keys and key files


def test_key_files_in_toml_and_json_load_with_their_windows(tmp_path: Path) -> None:
    toml = tmp_path / "keys.toml"
    toml.write_text(
        "[keys.k1]\n"
        f'secret_hex = "{SECRET.hex()}"\n'
        "not_before = 2026-01-01T00:00:00Z\n"
        "expires = 2026-02-01T00:00:00+01:00\n"
        "[keys.k2]\n"
        'secret_base64 = "AAECAwQFBgcICQoLDA0ODw=="\n'
    )
    ring = load_key_file(toml)
    assert ring.key_ids() == ["k1", "k2"]
    k1 = ring.lookup("k1", 1_767_225_600.0)  # 2026-01-01T00:00:00Z
    assert k1.secret == SECRET and k1.not_before == 1_767_225_600.0
    assert k1.expires == 1_767_225_600.0 + 31 * 86_400 - 3600
    assert ring.lookup("k2", 0).secret == bytes(range(16))
    as_json = tmp_path / "keys.json"
    as_json.write_text(
        json.dumps({"keys": {"k1": {"secret_hex": SECRET.hex(), "expires": "2030-01-01T00:00Z"}}})
    )
    assert load_key_file(as_json).lookup("k1", 0).expires == 1_893_456_000.0
    assert "secret" not in repr(k1) and SECRET.hex() not in repr(k1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[keys.k1]\nsecret_hex = "zz"\n', "not valid hex"),
        ('[keys.k1]\nsecret_base64 = "%%%"\n', "not valid base64"),
        ('[keys.k1]\nsecret_hex = "00ff"\n', ">= 16 bytes"),
        (f'[keys.k1]\nsecret_hex = "{SECRET.hex()}"\nsecret_base64 = "AA=="\n', "exactly one"),
        ("[keys.k1]\nnot_before = 2026-01-01T00:00:00Z\n", "exactly one"),
        (
            f'[keys.k1]\nsecret_hex = "{SECRET.hex()}"\nexpires = 2026-01-01T00:00:00\n',
            "timezone",
        ),
        (
            f'[keys.k1]\nsecret_hex = "{SECRET.hex()}"\nnot_before = 2026-02-01T00:00:00Z\n'
            "expires = 2026-01-01T00:00:00Z\n",
            "expires must come after not_before",
        ),
        (f'[keys.k1]\nsecret_hex = "{SECRET.hex()}"\ncolour = "red"\n', "colour"),
        (f'[keys."bad id!"]\nsecret_hex = "{SECRET.hex()}"\n', "key id"),
        ("[keys]\n", "no keys"),
        ('keys = "k1"\n', "exactly one table"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_key_files_are_refused_with_the_problem_named(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=re.escape(problem)) as caught:
        load_key_file(path)
    assert str(path) in str(caught.value)


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"absent\.toml"):
        load_key_file(tmp_path / "absent.toml")


def test_the_ring_signs_with_the_newest_valid_key_and_judges_keys_by_their_windows() -> None:
    old = Key("old", SECRET, not_before=100, expires=200)
    new = Key("new", SECRET[::-1], not_before=150, expires=300)
    ring = _ring(old, new)
    assert ring.signing_key(120) == old
    assert ring.signing_key(160) == new  # both valid: the newest signs
    assert ring.signing_key(400) is None
    assert ring.lookup("old", 199.9) == old  # accepted up to its expiry
    for key_id, at, reason in (
        ("old", 200, "expired-key"),
        ("new", 149, "key-not-yet-valid"),
        ("nope", 160, "unknown-key"),
    ):
        with pytest.raises(Exception, match=reason) as caught:
            ring.lookup(key_id, at)
        assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert ring.lookup("old", 205, skew=10) == old
    with pytest.raises(KeyFileError, match="different secret"):
        ring.install(Key("old", b"x" * 16))
    ring.install(Key("old", SECRET, not_before=100, expires=250))  # a new window: fine
    assert ring.lookup("old", 240).expires == 250
    assert ring.prune(now=320, grace=60) == ["old"] and ring.key_ids() == ["new"]
    assert ring.remove("new") and len(ring) == 0


# Canonical form and signatures


def test_the_signature_covers_the_canonical_form_as_documented() -> None:
    envelope = Envelope(
        id="0f6c",
        type="test.item",
        sender="tester",
        recipient=ROLE,
        cluster=CLUSTER,
        timestamp_ms=1_760_000_000_000,
        payload={"b": [1, "é"], "a": None},
    )
    signed = sign(envelope, _ring(Key("k1", SECRET)))
    expected = (
        '{"cluster":"bus-test","correlation_id":null,"id":"0f6c","key_id":"k1",'
        '"payload":{"a":null,"b":[1,"é"]},"recipient":"security-manager","sender":"tester",'
        '"timestamp_ms":1760000000000,"type":"test.item","version":1}'
    ).encode()
    assert canonical_bytes(signed.wire()) == expected
    assert signed.signature == hmac.new(SECRET, expected, hashlib.sha256).hexdigest()


def test_the_example_envelope_in_the_protocol_document_verifies() -> None:
    """docs/protocol.md is the contract: its example must pass the gate with its example key."""
    text = DOCS.read_text()
    section = text[text.index("## The bus") :]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    secret = re.search(r"secret_hex = \"([0-9a-f]+)\"", section)
    assert example is not None and secret is not None
    wire = json.loads(example.group(1))
    ring = _ring(Key(wire["key_id"], bytes.fromhex(secret.group(1))))
    verifier = Verifier(
        wire["cluster"],
        ring,
        require_signatures=True,
        replay_window_s=30,
        max_envelope_bytes=65_536,
        replay_cache=100,
    )
    entry = f"{wire['timestamp_ms'] + 5}-0"
    raw = json.dumps(wire).encode()  # any JSON encoder's spacing and key order
    assert verifier.check(raw, stream="s", entry_id=entry).payload == wire["payload"]


def test_signing_needs_a_valid_key() -> None:
    envelope = Envelope.new("test.item", sender="a", recipient="b", cluster="c", payload={}, now=20)
    with pytest.raises(SigningError, match="no key is valid"):
        sign(envelope, _ring(Key("k1", SECRET, expires=10)))


def test_the_key_is_chosen_at_the_envelopes_own_timestamp() -> None:
    """Regression (seen in test_adapter_security): k2 became valid at 1000.0004 s; an envelope
    stamped 1000.000 s (whole milliseconds) signed at 1000.0009 s with k2 was refused by every
    receiver as key-not-yet-valid, since receivers judge the key at the envelope's timestamp."""
    ring = _ring(Key("k1", SECRET), Key("k2", OTHER_SECRET, not_before=1000.0004))
    envelope = Envelope.new(
        "test.item", sender="a", recipient="b", cluster=CLUSTER, payload={}, now=1000.0009
    )
    assert envelope.timestamp_ms == 1_000_000
    assert sign(envelope, ring).key_id == "k1"
    later = Envelope.new(
        "test.item", sender="a", recipient="b", cluster=CLUSTER, payload={}, now=1000.001
    )
    assert sign(later, ring).key_id == "k2"


def test_parsing_refuses_what_the_canonical_form_could_not_encode() -> None:
    """Whatever parses can be signed and checked: no infinite number, no nesting deeper than
    MAX_NESTING (a payload about 980 levels deep once crashed the consumer's signature check)."""
    base = Envelope.new("test.item", sender="a", recipient="b", cluster="c", payload={"n": 1})
    at_limit = _raw(base, payload={"deep": _nested(MAX_NESTING - 2)})  # envelope, payload, ...
    envelope, wire = parse_envelope(at_limit)
    assert canonical_bytes(wire) and envelope.payload["deep"]
    for raw, problem in [
        (_raw(base, payload={"deep": _nested(MAX_NESTING - 1)}), "nested deeper"),
        (_raw(base, payload={"deep": _nested(500)}), "nested deeper"),
        (_raw(base).replace(b'"n": 1', b'"n": 1e400'), "not finite"),
        (_raw(base).replace(b'"n": 1', b'"n": -1e999'), "not finite"),
    ]:
        with pytest.raises(EnvelopeError, match=problem):
            parse_envelope(raw)


# Every rejection, end to end


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _raw(envelope: Envelope, **changes: Any) -> bytes:
    wire = envelope.wire()
    wire.update(changes)
    return json.dumps(wire).encode()


async def test_every_rejection_is_named_counted_reported_and_the_consumer_keeps_going(
    redis_server: RedisServer,
) -> None:
    now = time.time()
    receiver_ring = _ring(
        Key("k1", SECRET),
        Key("retired", b"r" * 16, expires=now - 100),
        Key("future", b"f" * 16, not_before=now + 100),
    )
    sender_ring = _ring(Key("k1", SECRET))
    stream = request_stream(CLUSTER, ROLE)
    reported: list[Rejection] = []
    recorder = Recorder()
    config = settings(redis_server.url, max_envelope_bytes=2048)
    receiver = make_bus(
        redis_server.url,
        "receiver",
        config=config,
        keyring=receiver_ring,
        on_reject=reported.append,
    )
    sender = make_bus(redis_server.url, "sender", config=config, keyring=sender_ring)

    def signed(
        n: int, ring: KeyRing = sender_ring, at: float | None = None, **fields: Any
    ) -> Envelope:
        stamp = time.time() if at is None else at
        values: dict[str, Any] = {
            "sender": "sender",
            "recipient": ROLE,
            "cluster": CLUSTER,
            "payload": {"n": n},
            "now": stamp,
        }
        values.update(fields)
        return sign(Envelope.new("test.item", **values), ring)

    replayed = signed(1).to_bytes()
    cases: list[tuple[str, bytes | dict[bytes, bytes]]] = [
        ("replay", replayed),  # the second copy of the entry before it
        ("bad-signature", _raw(signed(2), payload={"n": 999})),
        ("unknown-key", signed(3, _ring(Key("k9", SECRET))).to_bytes()),
        ("expired-key", signed(4, _ring(Key("retired", b"r" * 16))).to_bytes()),
        ("key-not-yet-valid", signed(5, _ring(Key("future", b"f" * 16))).to_bytes()),
        ("too-old", signed(6, at=time.time() - 60).to_bytes()),
        ("from-future", signed(7, at=time.time() + 60).to_bytes()),
        ("oversized", signed(8, payload={"n": 8, "pad": "x" * 3000}).to_bytes()),
        ("malformed", b"\xff not json"),
        ("malformed", b"[1, 2, 3]"),
        ("malformed", _raw(signed(9), colour="red")),
        ("malformed", b'{"id": "a", "id": "b"}'),
        # Valid JSON whose number Python reads as infinity: the signature check cannot encode it.
        ("malformed", _raw(signed(13), payload={"n": 13}).replace(b'"n": 13', b'"n": 1e400')),
        ("malformed", _raw(signed(14), payload={"n": 14, "deep": _nested(MAX_NESTING)})),
        ("malformed", {b"other": b"field"}),
        (
            "unsigned",
            Envelope.new(
                "test.item", sender="s", recipient=ROLE, cluster=CLUSTER, payload={"n": 10}
            ).to_bytes(),
        ),
        ("wrong-cluster", signed(11, cluster="elsewhere").to_bytes()),
        ("wrong-recipient", signed(12, recipient="quorum-manager").to_bytes()),
    ]
    raw = redis.Redis.from_url(redis_server.url)
    async with receiver, sender, consuming(receiver.serve(ROLE, recorder.handlers)):
        raw.xadd(stream, {b"envelope": replayed})
        for _reason, entry in cases:
            raw.xadd(stream, entry if isinstance(entry, dict) else {b"envelope": entry})
        await sender.send(ROLE, "test.item", Item(n=100))  # a good one after all that
        with anyio.fail_after(5):
            while sorted(recorder.applied) != [1, 100] or len(reported) < len(cases):
                await anyio.sleep(0.01)
    raw.close()
    expected = [reason for reason, _ in cases]
    assert [rejection.reason for rejection in reported] == expected
    assert [dead["reason"] for dead in dead_letters(redis_server.url, stream)] == expected
    for reason in set(expected):
        assert receiver.metrics.value("rejected", reason=reason) == expected.count(reason)
    forged = reported[1]
    assert forged.sender == "sender" and forged.key_id == "k1" and forged.envelope_id
    assert forged.to_json()["stream"] == stream


async def test_key_rotation_under_traffic_rejects_nothing_signed_inside_its_window(
    redis_server: RedisServer,
) -> None:
    """The sender's old key expires 1.2 s in and a new one starts at 0.6 s; the receiver gets
    the new key at 0.3 s (as the Security Manager would distribute it, ahead of its start) and
    keeps the old one until it expires. Messages flow for 1.8 s. The receiver starts reading at
    0.5 s and is slow, so some messages signed with the old key are read after it expired."""
    start = time.time()
    old = Key("old", b"o" * 32, expires=start + 1.2)
    new = Key("new", b"n" * 32, not_before=start + 0.6, expires=start + 600)
    sender_ring, receiver_ring = _ring(old, new), _ring(old)
    reported: list[Rejection] = []
    keys_used: list[str] = []
    read_after_expiry = 0
    recorder = Recorder()

    async def slow_handle(envelope: Envelope, item: Item) -> None:
        nonlocal read_after_expiry
        keys_used.append(envelope.key_id or "")
        read_after_expiry += envelope.key_id == "old" and time.time() >= start + 1.2
        await anyio.sleep(0.006)
        await recorder.handle(envelope, item)

    handlers = Handlers()
    handlers.add("test.item", Item, slow_handle)
    sender = make_bus(redis_server.url, "sender", keyring=sender_ring)
    receiver = make_bus(
        redis_server.url, "receiver", keyring=receiver_ring, on_reject=reported.append
    )
    sent = 0
    async with sender, receiver, anyio.create_task_group() as group:

        async def receive_later() -> None:
            await anyio.sleep(0.5)
            await group.start(receiver.serve(ROLE, handlers).run)

        group.start_soon(receive_later)
        while time.time() < start + 1.8:
            if "new" not in receiver_ring and time.time() >= start + 0.3:
                receiver_ring.install(new)
            await sender.send(ROLE, "test.item", Item(n=sent))
            sent += 1
            await anyio.sleep(0.003)
        with anyio.fail_after(10):
            while len(recorder.applied) + len(reported) < sent:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert reported == []
    assert sorted(recorder.applied) == list(range(sent))
    assert keys_used.count("old") > 20 and keys_used.count("new") > 20
    assert read_after_expiry > 0


async def test_an_unsigned_bus_still_checks_time_and_replay(redis_server: RedisServer) -> None:
    stream = request_stream(CLUSTER, ROLE)
    reported: list[Rejection] = []
    recorder = Recorder()
    async with make_bus(redis_server.url, on_reject=reported.append) as bus:
        envelope = bus.envelope("test.item", recipient=ROLE, payload=Item(n=1))
        assert envelope.signature is None
        async with consuming(bus.serve(ROLE, recorder.handlers)):
            await bus.publish(stream, envelope)
            await bus.publish(stream, envelope)
            await bus.publish(
                stream,
                Envelope.new(
                    "test.item",
                    sender="x",
                    recipient=ROLE,
                    cluster=CLUSTER,
                    payload={"n": 2},
                    now=time.time() - 120,
                ),
            )
            with anyio.fail_after(5):
                while len(reported) < 2:
                    await anyio.sleep(0.01)
    assert recorder.applied == [1]
    assert [rejection.reason for rejection in reported] == ["replay", "too-old"]


def test_the_verifier_forgets_old_ids_but_stays_bounded() -> None:
    verifier = Verifier(
        CLUSTER,
        None,
        require_signatures=False,
        replay_window_s=1,
        max_envelope_bytes=4096,
        replay_cache=100,
    )

    def check(at_ms: int, entry_ms: int | None = None) -> None:
        envelope = Envelope.new(
            "test.item", sender="s", recipient="r", cluster=CLUSTER, payload={}, now=at_ms / 1000
        )
        raw = envelope.to_bytes()
        verifier.check(raw, stream="s", entry_id=f"{entry_ms or at_ms}-0")
        if entry_ms is None:  # the same entry again is a redelivery; another entry, a replay
            verifier.check(raw, stream="s", entry_id=f"{at_ms}-0")
            with pytest.raises(Rejected, match="replay"):
                verifier.check(raw, stream="s", entry_id=f"{at_ms}-1")

    for k in range(300):
        check(1_000_000 + k)
    assert len(verifier._seen) == 100  # bounded by count
    check(1_010_000)  # 10 s later: everything older than twice the window is forgotten
    assert len(verifier._seen) == 1

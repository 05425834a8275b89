"""Signing envelopes, and the gate every received envelope passes: size, shape, signature, time,
replay.

Theory of operation: `sign` stamps an envelope with the key ring's newest valid key: key_id is
set first, then signature = hex HMAC-SHA256(secret, canonical bytes) (envelope.py), so the key
id is covered too. `Verifier.check` turns a stream entry's raw bytes into an envelope or raises
Rejected with one stable reason, in this order:

    oversized          more than max_envelope_bytes
    malformed          not a valid envelope (JSON, fields, types)
    wrong-cluster      for another cluster
    wrong-recipient    for another role or identity than the stream's reader
    unsigned           no signature, and signatures are required
    unknown-key        signed with a key id the ring does not hold (or no longer holds)
    expired-key        the key had expired at the envelope's timestamp
    key-not-yet-valid  the key was not yet valid at the envelope's timestamp
    bad-signature      the HMAC does not match
    too-old            the timestamp is more than the replay window before the entry's time
    from-future        ... or more than the window after it
    replay             an envelope id already seen in another stream entry

Time is judged against the stream entry's id, which Redis stamps with its own clock when the
entry is added, not against the moment of reading: a message redelivered an hour later, or read
from a backlog after an outage, gets the verdict it got when it arrived, while a captured
envelope added again later gets a new entry id and fails the window. A key is judged at the
envelope's timestamp, so a message signed inside its key's window is accepted even if it is
read after the key expired (rotation overlap), and a stolen expired key cannot sign anything
that passes the window. Within the window, replays are caught by the seen-id record: envelope
id -> the stream entry it arrived in, bounded by count and pruned of entries older than twice
the window (older ones fail the time check anyway). A redelivery of the same entry is not a
replay. Each Verifier is one process's memory; across processes, the consumer's "handled"
records in Redis (consumer.py) keep a duplicate from being applied twice.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass

from raft_manager.transport.keys import KeyRejected, KeyRing

from .envelope import Envelope, EnvelopeError, canonical_bytes, parse_envelope


class SigningError(RuntimeError):
    """No key is valid now to sign with."""


def signature(secret: bytes, canonical: bytes) -> str:
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def sign(envelope: Envelope, keyring: KeyRing) -> Envelope:
    """`envelope` signed with the newest key valid at its own timestamp (whole milliseconds, as
    every receiver judges it); SigningError when there is none."""
    key = keyring.signing_key(envelope.timestamp_ms / 1000)
    if key is None:
        raise SigningError(f"no key is valid now (ring holds {keyring.key_ids()})")
    keyed = envelope.model_copy(update={"key_id": key.key_id, "signature": None})
    return keyed.model_copy(
        update={"signature": signature(key.secret, canonical_bytes(keyed.wire()))}
    )


class Rejected(Exception):
    """An envelope refused at the gate; `reason` is one of the stable names above."""

    def __init__(self, reason: str, detail: str, envelope: Envelope | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.envelope = envelope  # when it parsed
        super().__init__(f"{reason}: {detail}")


DETAIL_CHARS = 500  # a refusal's detail, as logged and reported, is cut to this length


@dataclass(frozen=True, slots=True)
class Rejection:
    """What the bus reports about a refused envelope (to its on_reject callback)."""

    reason: str
    detail: str
    stream: str
    entry_id: str
    envelope_id: str | None = None  # the rest: when the envelope parsed
    sender: str | None = None
    key_id: str | None = None

    @classmethod
    def of(cls, error: Rejected, stream: str, entry_id: str) -> Rejection:
        envelope = error.envelope
        return cls(
            error.reason,
            error.detail[:DETAIL_CHARS],  # a malformed envelope's may name fields of any size
            stream,
            entry_id,
            envelope.id if envelope else None,
            envelope.sender if envelope else None,
            envelope.key_id if envelope else None,
        )

    def to_json(self) -> dict[str, str | None]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "stream": self.stream,
            "entry_id": self.entry_id,
            "envelope_id": self.envelope_id,
            "sender": self.sender,
            "key_id": self.key_id,
        }


def entry_time_ms(entry_id: str) -> int:
    """The Redis clock's milliseconds in a stream entry id ('1712345678901-0')."""
    millis, _, _ = entry_id.partition("-")
    return int(millis)


class Verifier:
    def __init__(
        self,
        cluster_id: str,
        keyring: KeyRing | None,
        *,
        require_signatures: bool,
        replay_window_s: float,
        max_envelope_bytes: int,
        replay_cache: int,
    ) -> None:
        if require_signatures and keyring is None:
            raise ValueError("signatures can only be required with a key ring")
        self.cluster_id = cluster_id
        self.keyring = keyring
        self.require_signatures = require_signatures
        self.window_ms = int(replay_window_s * 1000)
        self.max_envelope_bytes = max_envelope_bytes
        self.replay_cache = replay_cache
        self._seen: OrderedDict[str, tuple[str, str, int]] = OrderedDict()  # id -> entry

    def check(
        self, raw: bytes, *, stream: str, entry_id: str, recipient: str | None = None
    ) -> Envelope:
        """The envelope in stream entry `entry_id` of `stream`, if it passes; Rejected."""
        if len(raw) > self.max_envelope_bytes:
            raise Rejected("oversized", f"{len(raw)} bytes, at most {self.max_envelope_bytes}")
        try:
            envelope, wire = parse_envelope(raw)
        except EnvelopeError as error:
            raise Rejected("malformed", str(error)) from None
        if envelope.cluster != self.cluster_id:
            raise Rejected("wrong-cluster", f"for cluster {envelope.cluster!r}", envelope)
        if recipient is not None and envelope.recipient != recipient:
            raise Rejected("wrong-recipient", f"for {envelope.recipient!r}", envelope)
        self._check_signature(envelope, wire)
        arrived = entry_time_ms(entry_id)
        if envelope.timestamp_ms < arrived - self.window_ms:
            age = (arrived - envelope.timestamp_ms) / 1000
            raise Rejected("too-old", f"sent {age:.1f} s before it was added", envelope)
        if envelope.timestamp_ms > arrived + self.window_ms:
            ahead = (envelope.timestamp_ms - arrived) / 1000
            raise Rejected("from-future", f"stamped {ahead:.1f} s after it was added", envelope)
        self._check_replay(envelope, stream, entry_id, arrived)
        return envelope

    def _check_signature(self, envelope: Envelope, wire: dict[str, object]) -> None:
        if envelope.signature is None or envelope.key_id is None:
            if self.require_signatures:
                raise Rejected("unsigned", "signatures are required", envelope)
            return
        if self.keyring is None:
            return  # signing is off here: a signature is neither needed nor checked
        try:
            key = self.keyring.lookup(envelope.key_id, envelope.timestamp_ms / 1000)
        except KeyRejected as error:
            raise Rejected(error.reason, str(error), envelope) from None
        expected = signature(key.secret, canonical_bytes(wire))
        if not hmac.compare_digest(expected, envelope.signature):
            raise Rejected("bad-signature", f"does not match key {key.key_id}", envelope)

    def _check_replay(self, envelope: Envelope, stream: str, entry_id: str, arrived: int) -> None:
        seen = self._seen.get(envelope.id)
        if seen is not None:
            if seen[:2] != (stream, entry_id):
                raise Rejected("replay", f"first seen in {seen[0]} entry {seen[1]}", envelope)
            return  # a redelivery of the same entry
        self._seen[envelope.id] = (stream, entry_id, arrived)
        horizon = arrived - 2 * self.window_ms
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if len(self._seen) <= self.replay_cache and oldest[2] >= horizon:
                break
            self._seen.popitem(last=False)

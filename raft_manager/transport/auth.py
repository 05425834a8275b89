"""Authenticated Raft frames: an HMAC-SHA256 tag and its key id in front of the codec's frame.

Theory of operation: when a cluster has keys and frame authentication is on, every frame a node
sends is sealed as

    0xC1, key id length (u8), key id (ASCII), tag (32 bytes), frame

where tag = HMAC-SHA256(secret, b"raft-manager/frame/v1\\0" + key id + b"\\0" + frame). 0xC1 is
the one byte msgpack never uses, so a sealed frame cannot be mistaken for a plain one. The
receiver checks the tag before it decodes anything: a frame without the header, or under an
unknown, expired or not-yet-valid key, or whose tag does not match, raises FrameError (reason
unauthenticated, unknown-key, expired-key, key-not-yet-valid, bad-mac) and the transport drops
and counts it like any bad frame. Frames carry no time of their own, so a key's window is judged
by the receiver's clock with `skew` seconds of tolerance either way. Frames are not protected
against replay: Raft already ignores stale and duplicated messages (terms and log matching).
Sealing signs with the key ring's newest valid key; the per-key HMAC state is computed once and
copied per frame.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from .codec import FrameError
from .keys import KeyRejected, KeyRing

MARKER = 0xC1
TAG_BYTES = 32
LABEL = b"raft-manager/frame/v1\x00"
DEFAULT_SKEW_SECONDS = 30.0


class FrameAuthenticator:
    def __init__(
        self,
        keyring: KeyRing,
        *,
        skew: float = DEFAULT_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.skew = skew
        self._clock = clock
        self._states: dict[str, hmac.HMAC] = {}  # key id -> HMAC primed with the label
        self._version = -1

    def _state(self, key_id: str, secret: bytes) -> hmac.HMAC:
        if self._version != self.keyring.version:
            self._states.clear()
            self._version = self.keyring.version
        state = self._states.get(key_id)
        if state is None:
            state = hmac.new(secret, LABEL + key_id.encode() + b"\x00", hashlib.sha256)
            self._states[key_id] = state
        return state

    def seal(self, frame: bytes) -> bytes:
        """`frame` with its authentication header; FrameError no-signing-key when no key is
        valid now (nothing can be sent that peers would accept)."""
        key = self.keyring.signing_key(self._clock())
        if key is None:
            raise FrameError("no-signing-key", "no key is valid now")
        mac = self._state(key.key_id, key.secret).copy()
        mac.update(frame)
        key_id = key.key_id.encode()
        return bytes((MARKER, len(key_id))) + key_id + mac.digest() + frame

    def open(self, sealed: bytes) -> bytes:
        """The frame inside `sealed`, once its tag checks out; FrameError otherwise."""
        if len(sealed) < 2 or sealed[0] != MARKER:
            raise FrameError("unauthenticated", "the frame carries no authentication header")
        start = 2 + sealed[1]
        body = start + TAG_BYTES
        if len(sealed) < body:
            raise FrameError("unauthenticated", "the authentication header is cut short")
        try:
            key_id = sealed[2:start].decode("ascii")
            key = self.keyring.lookup(key_id, self._clock(), self.skew)
        except UnicodeDecodeError:
            raise FrameError("unknown-key", "the key id is not ASCII") from None
        except KeyRejected as error:
            raise FrameError(error.reason, str(error)) from None
        mac = self._state(key.key_id, key.secret).copy()
        mac.update(memoryview(sealed)[body:])
        if not hmac.compare_digest(mac.digest(), sealed[start:body]):
            raise FrameError("bad-mac", f"the tag does not match key {key_id}")
        return sealed[body:]

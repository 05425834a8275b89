"""A key distribution message applied to the running key ring: all of it, or none of it.

Theory of operation: a `security.keys` message installs keys (a new key, or a new window for an
installed one: its secret may not change), sets expiry times on installed keys (retiring the
old key of a rotation after an overlap) and revokes keys (at once). The whole message is first
applied to a copy of the ring; if any part of it is refused (a bad secret, a changed secret, an
expiry before a key's start, an unknown key to expire), or if it would leave no key valid now
(this node could sign nothing its peers accept), the ring is left as it was and the message is
refused with the reason. Otherwise the same changes are made to the running ring, which the bus
(signing, checking) and the Raft transport (frame MACs) use from their next message on.
Revoking a key that is not installed changes nothing (the revocation holds).
"""

from __future__ import annotations

from raft_manager.transport.keys import Key, KeyFileError, KeyRing, key_from_mapping

from .messages import KeysRequest


class KeyUpdateRefused(ValueError):
    """The message cannot be applied; nothing changed."""


def apply_keys(ring: KeyRing, request: KeysRequest, now: float) -> None:
    trial = KeyRing(ring.keys())
    try:
        _apply(trial, request)
    except KeyFileError as error:
        raise KeyUpdateRefused(str(error)) from None
    if trial.signing_key(now) is None:
        raise KeyUpdateRefused(f"it would leave no key valid now (keys: {trial.key_ids()})")
    _apply(ring, request)


def _apply(ring: KeyRing, request: KeysRequest) -> None:
    for spec in request.install:
        ring.install(key_from_mapping(spec.key_id, spec.model_dump(exclude={"key_id"})))
    for key_id, when in sorted(request.expire.items()):
        key = ring.get(key_id)
        if key is None:
            raise KeyFileError(f"key {key_id} is not installed")
        ring.install(Key(key.key_id, key.secret, key.not_before, when.timestamp()))
    for key_id in request.revoke:
        ring.remove(key_id)

"""Shared HMAC keys with validity windows: the key ring that signs bus envelopes and Raft frames.

Theory of operation: a key is an id, a secret (at least 16 bytes) and an optional validity window
[not_before, expires). A `KeyRing` holds the keys a process knows; they come from a key file
(`load_key_file`, TOML or JSON) and, at run time, from whoever distributes keys (the Security
Manager adapter calls `install` and `remove`). Rotation is overlap, not switch-over: the ring
signs new messages with the newest key valid now (the one with the latest not_before), while
every key stays acceptable for what was signed inside its own window, until it expires. So a
new key is installed everywhere before its not_before, and the old one is left to expire after
it: nothing signed in between is ever refused. Times are Unix seconds passed in by the caller;
the ring reads no clock and touches no file (the loader does, once).

Key file (TOML; JSON is the same shape under a top-level object):

    [keys.k2026a]
    secret_hex = "9f2c...64 hex digits..."     # or secret_base64 = "..."
    not_before = 2026-01-01T00:00:00Z          # optional, with a time zone
    expires = 2026-04-01T00:00:00Z             # optional
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, model_validator

MIN_SECRET_BYTES = 16
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyFileError(ValueError):
    """A key file or key description that cannot be used; the message says why."""


class KeyRejected(ValueError):
    """A key id that cannot vouch for a message; `reason` is stable, fit to count by."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Key:
    key_id: str
    secret: bytes
    not_before: float | None = None  # Unix seconds; None: since always
    expires: float | None = None  # Unix seconds, exclusive; None: never

    def __post_init__(self) -> None:
        if not KEY_ID.match(self.key_id):
            raise KeyFileError(f"key id {self.key_id!r}: use 1-64 letters, digits, '.', '_', '-'")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise KeyFileError(f"key {self.key_id}: the secret must be >= {MIN_SECRET_BYTES} bytes")
        if (
            self.not_before is not None
            and self.expires is not None
            and self.expires <= self.not_before
        ):
            raise KeyFileError(f"key {self.key_id}: expires must come after not_before")

    def valid_at(self, at: float, skew: float = 0.0) -> bool:
        return (self.not_before is None or at >= self.not_before - skew) and (
            self.expires is None or at < self.expires + skew
        )

    def __repr__(self) -> str:  # never print a secret
        return f"Key({self.key_id!r}, not_before={self.not_before}, expires={self.expires})"


class _KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret_hex: str | None = None
    secret_base64: str | None = None
    not_before: AwareDatetime | None = None
    expires: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> _KeySpec:
        if (self.secret_hex is None) == (self.secret_base64 is None):
            raise ValueError("give exactly one of secret_hex and secret_base64")
        return self

    def secret(self) -> bytes:
        try:
            if self.secret_hex is not None:
                return bytes.fromhex(self.secret_hex)
            assert self.secret_base64 is not None
            return base64.b64decode(self.secret_base64, validate=True)
        except (ValueError, binascii.Error):
            encoding = "hex" if self.secret_hex is not None else "base64"
            raise KeyFileError(f"the secret is not valid {encoding}") from None


def key_from_mapping(key_id: str, data: Mapping[str, Any]) -> Key:
    """A key from its description (the key file's table for it, or a key distribution message's
    payload): secret_hex or secret_base64, optional not_before and expires; KeyFileError."""
    try:
        spec = _KeySpec.model_validate(dict(data))
        return Key(
            key_id,
            spec.secret(),
            spec.not_before.timestamp() if spec.not_before else None,
            spec.expires.timestamp() if spec.expires else None,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'key'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise KeyFileError(f"key {key_id}: {problems}") from None
    except KeyFileError as error:
        message = str(error)
        raise KeyFileError(
            message if message.startswith("key") else f"key {key_id}: {message}"
        ) from None


def parse_key_file(text: str, json_format: bool) -> list[Key]:
    """The keys in a key file's text; KeyFileError naming the first problem."""
    try:
        data: Any = json.loads(text) if json_format else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise KeyFileError(f"not valid {'JSON' if json_format else 'TOML'}: {error}") from None
    if not isinstance(data, dict) or set(data) != {"keys"} or not isinstance(data["keys"], dict):
        raise KeyFileError("expected exactly one table, 'keys', mapping key ids to keys")
    if not data["keys"]:
        raise KeyFileError("the file holds no keys")
    keys = []
    for key_id, spec in data["keys"].items():
        if not isinstance(spec, dict):
            raise KeyFileError(f"key {key_id}: expected a table")
        keys.append(key_from_mapping(key_id, spec))
    return keys


def load_key_file(path: Path) -> KeyRing:
    """A ring holding the keys of a TOML or JSON key file (JSON when it ends in .json)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise KeyFileError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text file") from None
    try:
        keys = parse_key_file(text, json_format=path.suffix.lower() == ".json")
    except KeyFileError as error:
        raise KeyFileError(f"{path}: {error}") from None
    ring = KeyRing()
    for key in keys:
        ring.install(key)
    return ring


class KeyRing:
    def __init__(self, keys: list[Key] | None = None) -> None:
        self._keys: dict[str, Key] = {}
        self.version = 0  # bumped at every change, so holders of derived state can refresh
        for key in keys or ():
            self.install(key)

    def install(self, key: Key) -> None:
        """Add a key, or update an installed key's window (its secret may not change: an id
        names one secret forever, or messages in flight would fail to verify)."""
        known = self._keys.get(key.key_id)
        if known is not None and known.secret != key.secret:
            raise KeyFileError(f"key {key.key_id}: already installed with a different secret")
        self._keys[key.key_id] = key
        self.version += 1

    def remove(self, key_id: str) -> bool:
        """Revoke a key at once (what it signed is refused from now on)."""
        removed = self._keys.pop(key_id, None) is not None
        self.version += bool(removed)
        return removed

    def prune(self, now: float, grace: float) -> list[str]:
        """Drop keys expired for longer than `grace` seconds; their ids."""
        gone = [
            key.key_id
            for key in self._keys.values()
            if key.expires is not None and key.expires + grace <= now
        ]
        for key_id in gone:
            self.remove(key_id)
        return gone

    def signing_key(self, now: float) -> Key | None:
        """The key to sign with now: the newest (latest not_before) of those valid now."""
        valid = [key for key in self._keys.values() if key.valid_at(now)]
        if not valid:
            return None
        return max(valid, key=lambda key: (key.not_before or float("-inf"), key.key_id))

    def lookup(self, key_id: str, at: float, skew: float = 0.0) -> Key:
        """The key `key_id` if it was valid at `at` (give or take `skew` seconds); otherwise
        KeyRejected with reason unknown-key, expired-key or key-not-yet-valid."""
        key = self._keys.get(key_id)
        if key is None:
            raise KeyRejected("unknown-key", f"no key {key_id!r}")
        if key.valid_at(at, skew):
            return key
        if key.expires is not None and at >= key.expires + skew:
            raise KeyRejected("expired-key", f"key {key_id} expired at {key.expires:.3f}")
        raise KeyRejected("key-not-yet-valid", f"key {key_id} is valid from {key.not_before}")

    def get(self, key_id: str) -> Key | None:
        """The installed key `key_id`, whatever its window."""
        return self._keys.get(key_id)

    def keys(self) -> list[Key]:
        return [self._keys[key_id] for key_id in sorted(self._keys)]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

"""Shared memory: a namespaced key-value store of JSON values, with versions and TTLs.

Theory of operation: every write stamps the key with a version equal to its log index, which
only grows, so compare-and-set on a version can never be fooled by a key deleted and written
again (no ABA); an absent key has version 0. A key with a TTL disappears at the first entry whose
timestamp passes its expiry (and reads already treat it as gone once the ledger clock passes it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .commands import Args
from .errors import LedgerError
from .json_values import same
from .tasks import Emit
from .timers import Timers

TTL = "ttl"
_SEP = "\x00"


@dataclass(slots=True)
class Item:
    namespace: str
    key: str
    value: Any
    version: int
    updated_at: int
    expires_at: int | None = None


@dataclass(slots=True)
class MemoryStore:
    timers: Timers
    items: dict[tuple[str, str], Item] = field(default_factory=dict)

    def put(self, cmd: Args, index: int, now: int, emit: Emit) -> dict[str, Any]:
        return self._write(
            cmd["namespace"], cmd["key"], cmd["value"], cmd["ttl_seconds"], index, now, emit
        )

    def cas(self, cmd: Args, index: int, now: int, emit: Emit) -> dict[str, Any]:
        current = self._live(cmd["namespace"], cmd["key"], now)
        if cmd["compare"] == "version":
            have = current.version if current is not None else 0
            if have != cmd["expected_version"]:
                raise LedgerError("cas_failed", f"version is {have}, not {cmd['expected_version']}")
        elif current is None or not same(current.value, cmd["expected_value"]):
            raise LedgerError("cas_failed", f"{cmd['key']} does not hold the expected value")
        return self._write(
            cmd["namespace"], cmd["key"], cmd["value"], cmd["ttl_seconds"], index, now, emit
        )

    def delete(self, cmd: Args, now: int, emit: Emit) -> dict[str, Any]:
        existed = self._live(cmd["namespace"], cmd["key"], now) is not None
        self.items.pop((cmd["namespace"], cmd["key"]), None)
        if existed:
            emit("memory.deleted", {"namespace": cmd["namespace"], "key": cmd["key"]})
        return {"ok": True, "existed": existed}

    def expire(self, timer_key: str, now: int, emit: Emit) -> None:
        namespace, _, key = timer_key.partition(_SEP)
        item = self.items.get((namespace, key))
        if item is not None and item.expires_at is not None and item.expires_at <= now:
            del self.items[(namespace, key)]
            emit("memory.expired", {"namespace": namespace, "key": key})

    def get(self, namespace: str, key: str, now: int) -> dict[str, Any] | None:
        item = self._live(namespace, key, now)
        return asdict(item) if item is not None else None

    def find(self, namespace: str, prefix: str, limit: int, now: int) -> list[dict[str, Any]]:
        keys = sorted(k for (ns, k) in self.items if ns == namespace and k.startswith(prefix))
        found = []
        for key in keys:
            item = self._live(namespace, key, now)
            if item is not None:
                found.append(asdict(item))
                if len(found) >= limit:
                    break
        return found

    def dump(self) -> list[Item]:
        return [self.items[k] for k in sorted(self.items)]

    def load(self, image: list[dict[str, Any]]) -> None:
        self.items = {}
        for fields in image:
            item = Item(**fields)
            self.items[(item.namespace, item.key)] = item
            if item.expires_at is not None:
                self.timers.schedule(item.expires_at, TTL, item.namespace + _SEP + item.key)

    def _live(self, namespace: str, key: str, now: int) -> Item | None:
        item = self.items.get((namespace, key))
        if item is None or (item.expires_at is not None and item.expires_at <= now):
            return None
        return item

    def _write(
        self,
        namespace: str,
        key: str,
        value: Any,
        ttl_seconds: float | None,
        index: int,
        now: int,
        emit: Emit,
    ) -> dict[str, Any]:
        expires_at = now + round(ttl_seconds * 1000) if ttl_seconds is not None else None
        self.items[(namespace, key)] = Item(namespace, key, value, index, now, expires_at)
        if expires_at is not None:
            self.timers.schedule(expires_at, TTL, namespace + _SEP + key)
        emit("memory.put", {"namespace": namespace, "key": key, "version": index})
        return {"ok": True, "version": index, "expires_at": expires_at}

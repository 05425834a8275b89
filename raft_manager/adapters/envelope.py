"""The bus's message: a versioned envelope around a JSON payload, and its canonical bytes.

Theory of operation: an envelope travels as one JSON object in the `envelope` field of a Redis
stream entry. Its fields (version 1):

    version         1
    id              unique per message (a random hex string); handlers deduplicate by it
    type            what the payload is, e.g. "quorum.change_request"
    sender          the identity that sent it (replies go to its reply stream)
    recipient       the role or identity it is for
    cluster         the cluster id
    timestamp_ms    when it was sent, Unix milliseconds (the sender's clock)
    correlation_id  for a reply: the id of the request it answers; else null
    payload         a JSON object, as the type defines it
    key_id          the key that signed it (with signature; both null when unsigned)
    signature       hex HMAC-SHA256 over the canonical form

The canonical form is what gets signed: the envelope's JSON object without `signature`,
serialized with sorted keys, no whitespace, non-ASCII characters as themselves, UTF-8
(`canonical_bytes`). A receiver recomputes it from the object it parsed, so any JSON encoder may
write the wire form. Parsing (`parse_envelope`) is strict and total: anything but exactly such
an object (a missing or extra field, a wrong type, duplicate keys, NaN, a number too big to be
finite, objects and arrays nested more than MAX_NESTING deep) raises EnvelopeError; so whatever
parses has a canonical form.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .streams import NAME

ENVELOPE_FIELD = b"envelope"
ENVELOPE_VERSION: Literal[1] = 1
TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
ID = r"^[A-Za-z0-9._:-]{1,128}$"
SIGNATURE = r"^[0-9a-f]{64}$"
MAX_NESTING = 64  # objects and arrays inside one another, the envelope's own object included


class EnvelopeError(ValueError):
    """Bytes that are not a valid envelope."""


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = ENVELOPE_VERSION
    id: str = Field(pattern=ID)
    type: str = Field(max_length=128)
    sender: str = Field(pattern=NAME.pattern)
    recipient: str = Field(pattern=NAME.pattern)
    cluster: str = Field(pattern=NAME.pattern)
    timestamp_ms: int = Field(ge=0, lt=1 << 53)
    correlation_id: str | None = Field(default=None, pattern=ID)
    payload: dict[str, Any]
    key_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    signature: str | None = Field(default=None, pattern=SIGNATURE)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not TYPE.match(value):
            raise ValueError("a type is dotted lowercase words, e.g. quorum.change_request")
        return value

    @model_validator(mode="after")
    def _signed_or_not(self) -> Envelope:
        if (self.key_id is None) != (self.signature is None):
            raise ValueError("key_id and signature go together")
        return self

    @classmethod
    def new(
        cls,
        type: str,
        *,
        sender: str,
        recipient: str,
        cluster: str,
        payload: BaseModel | Mapping[str, Any],
        correlation_id: str | None = None,
        now: float | None = None,
    ) -> Envelope:
        """A fresh unsigned envelope (random id, the current time); ValueError if a field is bad
        or the payload is not JSON."""
        body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
        try:
            body = json.loads(_dumps(body))  # JSON values only, as a receiver will see them
        except (TypeError, ValueError) as error:
            raise ValueError(f"the payload is not JSON: {error}") from None
        stamp = time.time() if now is None else now
        return cls(
            id=uuid.uuid4().hex,
            type=type,
            sender=sender,
            recipient=recipient,
            cluster=cluster,
            timestamp_ms=int(stamp * 1000),
            correlation_id=correlation_id,
            payload=body,
        )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        return _dumps(self.wire()).encode()


def _dumps(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_bytes(wire: Mapping[str, Any]) -> bytes:
    """What a signature covers: the envelope object without `signature`, canonically encoded."""
    return _dumps({name: value for name, value in wire.items() if name != "signature"}).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise EnvelopeError("a JSON object names a key twice")
    return result


def _no_constants(name: str) -> None:
    raise EnvelopeError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise EnvelopeError(f"the number {text[:40]} is not finite")
    return value


def _nesting_within(value: dict[str, Any], limit: int) -> bool:
    """Are `value`'s objects and arrays nested at most `limit` deep, `value` included (level
    by level, no recursion)?"""
    level: list[dict[str, Any] | list[Any]] = [value]
    for _ in range(limit):
        level = [
            inner
            for container in level
            for inner in (container.values() if isinstance(container, dict) else container)
            if isinstance(inner, dict | list)
        ]
        if not level:
            return True
    return False


def parse_envelope(raw: bytes) -> tuple[Envelope, dict[str, Any]]:
    """The envelope in `raw` and the JSON object it was read from; EnvelopeError."""
    try:
        wire = json.loads(
            raw,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_finite,
        )
    except EnvelopeError:
        raise
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise EnvelopeError(f"not JSON: {error}") from None
    if not isinstance(wire, dict):
        raise EnvelopeError("not a JSON object")
    if not _nesting_within(wire, MAX_NESTING):
        raise EnvelopeError(f"objects and arrays nested deeper than {MAX_NESTING}")
    try:
        return Envelope.model_validate(wire), wire
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'envelope'}: {problem['msg']}"
            for problem in error.errors()[:5]
        )
        raise EnvelopeError(problems) from None

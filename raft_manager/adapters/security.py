"""The Security Manager adapter: keys in, attestations and authentication-failure reports out.

Theory of operation: keys are per node, so `security.keys` goes to each node's own request
stream (`raft-manager.<node id>`), and each node answers for itself (`security.keys_result`:
the key ids it now holds and the one it signs with). A key message must be signed (by a key
this node already trusts, so whoever may change the keys is whoever holds one) and the node
must run with a key ring ([security] key_file); key_updates.py applies it all or nothing.
Installed keys live in memory: a restarted node holds its key file's keys again, so the
Security Manager also writes new keys to the key files it distributes (attestation shows what a
node holds). `security.attest_request` is served on the shared stream (by any one node) and on
each node's stream: `security.attestation` names the node, the key ids it holds and signs with,
whether frames and envelopes are authenticated, and the cluster's members (so the Security
Manager knows whom to ask next). Every `REPORT_S` each node publishes the authentication
failures it saw since its last report (auth_reports.py), when there were any: as many as fit
in one envelope are listed, the rest counted; a report Redis did not take goes with the next.
"""

from __future__ import annotations

import anyio

from raft_manager.client import ClientError

from .auth_reports import AuthFailureLog
from .envelope import Envelope
from .errors import EnvelopeTooBig
from .handlers import Handlers, Reply
from .key_updates import KeyUpdateRefused, apply_keys
from .messages import (
    SECURITY_ATTEST,
    SECURITY_ATTESTATION,
    SECURITY_FAILURES,
    SECURITY_KEYS,
    SECURITY_KEYS_RESULT,
    Attestation,
    AttestRequest,
    AuthFailures,
    KeysRequest,
    KeysResult,
)
from .node import AdapterNode, repeat
from .streams import request_stream

SECURITY_MANAGER = "security-manager"
REPORT_S = 1.0
MEMBERS_WAIT_S = 1.0  # an attestation waits this long for the member list


class SecurityAdapter:
    def __init__(self, node: AdapterNode, failures: AuthFailureLog) -> None:
        self.node = node
        self.failures = failures

    def register(self, shared: Handlers, own: Handlers) -> None:
        for handlers in (shared, own):
            handlers.add(SECURITY_ATTEST, AttestRequest, self.attest, invalid=self._bad_attest)
        own.add(SECURITY_KEYS, KeysRequest, self.keys, invalid=self._bad_keys)

    async def run(self) -> None:
        await repeat(SECURITY_FAILURES, REPORT_S, self.report)

    async def report(self) -> None:
        """Send what failed since the last report; kept for the next if it cannot be sent."""
        failures = self.failures.take(self.node.node_id)
        if failures is None:
            return
        bus = self.node.bus
        try:
            stream = request_stream(bus.cluster_id, SECURITY_MANAGER)
            await bus.publish_encoded(stream, [self._fit(failures)])
        except BaseException:
            self.failures.put_back(failures)
            raise

    def _fit(self, failures: AuthFailures) -> bytes:
        """The report's envelope as it travels, listing as many rejections as max_envelope_bytes
        allows (the first ones; the rest are counted in `omitted`)."""
        bus, listed = self.node.bus, len(failures.rejections)
        while True:
            report = failures.model_copy(
                update={
                    "rejections": failures.rejections[:listed],
                    "omitted": failures.omitted + len(failures.rejections) - listed,
                }
            )
            envelope = bus.envelope(SECURITY_FAILURES, recipient=SECURITY_MANAGER, payload=report)
            try:
                return bus.encoded(envelope)
            except EnvelopeTooBig:
                if not listed:
                    raise
                listed //= 2

    async def keys(self, envelope: Envelope, request: KeysRequest) -> Reply:
        ring = self.node.parts.keyring
        if ring is None:
            return self._refused("no-key-ring", "this node runs without keys ([security] key_file)")
        if envelope.key_id is None:
            return self._refused("unsigned", "a key message must be signed")
        try:
            apply_keys(ring, request, self.node.bus.clock())
        except KeyUpdateRefused as error:
            return self._refused("rejected", str(error))
        return Reply(SECURITY_KEYS_RESULT, self._held(ok=True))

    async def attest(self, envelope: Envelope, request: AttestRequest) -> Reply:
        members = None
        with anyio.move_on_after(MEMBERS_WAIT_S):
            try:
                members = [m["id"] for m in (await self.node.client.members())["members"]]
            except (ClientError, TimeoutError):
                members = None
        held = self._held(ok=True)
        attestation = Attestation(
            ok=True,
            node=self.node.node_id,
            nonce=request.nonce,
            key_ids=held.key_ids,
            signing_key_id=held.signing_key_id,
            frames_authenticated=self.node.parts.frames_authenticated,
            signatures_required=self.node.bus.verifier.require_signatures,
            members=members,
        )
        return Reply(SECURITY_ATTESTATION, attestation)

    def _held(self, ok: bool, error: str | None = None, reason: str | None = None) -> KeysResult:
        ring = self.node.parts.keyring
        signing = ring.signing_key(self.node.bus.clock()) if ring is not None else None
        return KeysResult(
            ok=ok,
            error=error,
            reason=reason,
            node=self.node.node_id,
            key_ids=ring.key_ids() if ring is not None else [],
            signing_key_id=signing.key_id if signing is not None else None,
        )

    def _refused(self, code: str, reason: str) -> Reply:
        return Reply(SECURITY_KEYS_RESULT, self._held(ok=False, error=code, reason=reason))

    def _bad_keys(self, problems: str) -> Reply:
        return self._refused("bad-payload", problems)

    def _bad_attest(self, problems: str) -> Reply:
        refused = Attestation(
            ok=False, error="bad-payload", reason=problems, node=self.node.node_id
        )
        return Reply(SECURITY_ATTESTATION, refused)

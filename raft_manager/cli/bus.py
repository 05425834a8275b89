"""`raft-manager bus tail|send`: look at the swarm bus's streams and put a message on one.

Theory of operation: both commands talk to Redis directly (--redis-url, else
$RAFT_MANAGER_BUS_REDIS_URL, else redis://127.0.0.1:6379/0), for debugging. `tail` prints the
last --count entries of a stream, oldest first, each with its envelope decoded when it is one
(signatures are shown, not checked), and with --follow keeps printing new entries until
interrupted. `send` builds an envelope like a peer would (a fresh id, the time, --sender as
sender), signs it with the newest valid key of --sign-with's key file, and adds it to the
stream; on a bus stream (bus:<cluster>:requests:<role>, bus:<cluster>:replies:<identity>) the
cluster and recipient default to the ones the name carries.

--json: `tail` prints {"stream", "entries": [entry]}, with --follow one entry object per line;
an entry is {"entry_id", "envelope" (the object, or null), "error" (why it is not an envelope,
or null), "fields" (the entry's other fields)}. `send` prints {"stream", "entry_id",
"envelope"}. Exit codes: 0 done, 2 bad usage (bad JSON, bad key file, a field the envelope
refuses, credentials Redis refuses), 4 Redis did not answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from raft_manager.adapters import Bus, BusAuthError, BusError, BusUnavailable, SigningError
from raft_manager.adapters.envelope import ENVELOPE_FIELD, EnvelopeError, parse_envelope
from raft_manager.adapters.errors import auth_failure, redact
from raft_manager.adapters.streams import parse_stream
from raft_manager.server.config import AdaptersConfig
from raft_manager.transport.keys import KeyFileError, KeyRing, load_key_file

BAD_USAGE, UNAVAILABLE = 2, 4
EXIT_CODES = (
    "Exit codes: 0 done; 2 bad usage (bad JSON, a bad key file, a field the envelope refuses,"
    " credentials Redis refuses); 4 Redis did not answer."
)
T = TypeVar("T")
DEFAULT_URL = "redis://127.0.0.1:6379/0"

bus_app = typer.Typer(
    help="Debug the swarm bus: read a stream, put a message on one.", no_args_is_help=True
)
StreamArgument = Annotated[str, typer.Argument(help="The stream's key.", show_default=False)]
UrlOption = Annotated[
    str,
    typer.Option("--redis-url", envvar="RAFT_MANAGER_BUS_REDIS_URL", help="The bus's Redis."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (shape in the help).")]


def _fail(code: int, message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _describe(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    raw = fields.get(ENVELOPE_FIELD)
    envelope: dict[str, Any] | None = None
    error = None
    if raw is None:
        error = "no envelope field"
    elif raw:
        try:
            envelope = parse_envelope(raw)[1]
        except EnvelopeError as problem:
            error = str(problem)
    others = {
        key.decode(errors="replace"): value.decode(errors="replace")
        for key, value in fields.items()
        if key != ENVELOPE_FIELD
    }
    return {"entry_id": entry_id.decode(), "envelope": envelope, "error": error, "fields": others}


def _line(entry: dict[str, Any]) -> str:
    envelope = entry["envelope"]
    extra = " ".join(f"{key}={value}" for key, value in sorted(entry["fields"].items()))
    if envelope is None:
        return f"{entry['entry_id']}  (not an envelope: {entry['error']}) {extra}".rstrip()
    signed = f"signed by {envelope.get('key_id')}" if envelope.get("signature") else "unsigned"
    reply = f" re {envelope['correlation_id']}" if envelope.get("correlation_id") else ""
    payload = json.dumps(envelope["payload"], sort_keys=True, ensure_ascii=False)
    return (
        f"{entry['entry_id']}  {envelope['type']}  {envelope['sender']} -> "
        f"{envelope['recipient']}{reply}  [{envelope['id']}, {signed}]  {payload}  {extra}"
    ).rstrip()


@bus_app.command("tail", epilog=EXIT_CODES)
def tail_command(
    stream: StreamArgument,
    count: Annotated[int, typer.Option("--count", min=1, help="How many entries.")] = 10,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new entries.")] = False,
    redis_url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Print a stream's last entries (oldest first), envelopes decoded (signatures shown, not
    checked).

    --json: {"stream", "entries": [entry]}; with --follow, one entry per line. An entry is
    {"entry_id", "envelope" (or null), "error" (why it is not an envelope, or null), "fields"
    (its other fields, e.g. a dead letter's reason)}.
    """

    def show(entry: dict[str, Any], streaming: bool) -> None:
        if not as_json:
            typer.echo(_line(entry))
        elif streaming:
            typer.echo(json.dumps(entry, sort_keys=True, ensure_ascii=False))

    async def run() -> None:
        client = _client(redis_url)
        try:
            newest: Any = await client.xrevrange(stream, count=count)
            rows = list(reversed(newest))
            entries = [_describe(entry_id, fields) for entry_id, fields in rows]
            for entry in entries:
                show(entry, follow)
            if as_json and not follow:
                typer.echo(json.dumps({"stream": stream, "entries": entries}, ensure_ascii=False))
            last: Any = rows[-1][0] if rows else b"$"
            while follow:
                answer: Any = await client.xread({stream: last}, count=100, block=1000)
                for _stream, new in answer or ():
                    for entry_id, fields in new:
                        last = entry_id
                        show(_describe(entry_id, fields), True)
        finally:
            await client.aclose()

    _run(run, redis_url)


@bus_app.command("send", epilog=EXIT_CODES)
def send_command(
    stream: StreamArgument,
    type_: Annotated[str, typer.Option("--type", help="The message type.", show_default=False)],
    payload: Annotated[
        str, typer.Option("--payload", help="The payload: a JSON object.", show_default=False)
    ],
    recipient: Annotated[
        str | None,
        typer.Option("--recipient", help="Default: the role or identity the stream is for."),
    ] = None,
    cluster_id: Annotated[
        str | None,
        typer.Option("--cluster-id", help="Default: the stream's cluster, else raft-manager."),
    ] = None,
    sender: Annotated[str, typer.Option("--sender", help="Who it is from.")] = "raft-manager-cli",
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", help="The request this answers.")
    ] = None,
    sign_with: Annotated[
        Path | None, typer.Option("--sign-with", help="A key file: sign with its newest key.")
    ] = None,
    maxlen: Annotated[
        int, typer.Option("--maxlen", min=100, help="Trim the stream to about this.")
    ] = 10_000,
    redis_url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Put one envelope on a stream, signed with --sign-with's newest valid key.

    On a bus stream (bus:CLUSTER:requests:ROLE, bus:CLUSTER:replies:IDENTITY) the cluster and
    the recipient default to the name's. --json: {"stream", "entry_id", "envelope"}.
    """
    try:
        body = json.loads(payload)
    except ValueError as error:
        raise _fail(BAD_USAGE, f"--payload is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise _fail(BAD_USAGE, "--payload must be a JSON object")
    parsed = parse_stream(stream)
    recipient = recipient or (parsed[2] if parsed else None)
    if recipient is None:
        raise _fail(BAD_USAGE, "not a bus stream name: give --recipient")
    keyring: KeyRing | None = None
    try:
        if sign_with is not None:
            keyring = load_key_file(sign_with)
        config = AdaptersConfig(redis_url=redis_url, stream_maxlen=maxlen)
        bus = Bus(
            config,
            cluster_id=cluster_id or (parsed[0] if parsed else "raft-manager"),
            identity=sender,
            keyring=keyring,
        )
        envelope = bus.envelope(
            type_, recipient=recipient, payload=body, correlation_id=correlation_id
        )
    except (KeyFileError, SigningError, ValueError) as error:
        raise _fail(BAD_USAGE, str(error).replace("\n", " ")) from None

    async def run() -> str:
        async with bus:
            return await bus.publish(stream, envelope)

    entry_id = _run(run, redis_url)
    if as_json:
        typer.echo(
            json.dumps(
                {"stream": stream, "entry_id": entry_id, "envelope": envelope.wire()},
                ensure_ascii=False,
            )
        )
    else:
        typer.echo(f"sent {envelope.type} {envelope.id} to {stream} as entry {entry_id}")


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def _run(work: Callable[[], Awaitable[T]], url: str) -> T:
    try:
        return anyio.run(work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BusAuthError as error:
        raise _fail(BAD_USAGE, str(error)) from None
    except BusUnavailable as error:
        raise _fail(UNAVAILABLE, str(error)) from None
    except BusError as error:
        raise _fail(BAD_USAGE, str(error)) from None
    except ValueError as error:  # a URL redis-py cannot parse
        raise _fail(BAD_USAGE, f"{redact(url)}: {error}") from None
    except (RedisError, OSError) as error:
        refused = auth_failure(error, url)
        if refused is not None:
            raise _fail(BAD_USAGE, str(refused)) from None
        raise _fail(UNAVAILABLE, f"Redis at {redact(url)}: {error}") from None

"""`raft-manager memory ...`: put, get, delete, cas, list on the swarm's shared memory.

Theory of operation: each command is one SwarmClient call (see ledger.py for the cluster, the
output and the exit codes). Values are JSON; every write's version is its log index, so `cas
--expected-version` cannot be fooled by a key deleted and written again.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .ledger import (
    BAD_USAGE,
    NOTHING,
    ClusterOption,
    JsonOption,
    NamespaceOption,
    StaleOption,
    TimeoutOption,
    answer,
    call,
    cell,
    command,
    json_argument,
    show,
    table,
)

memory_app = typer.Typer(
    help="Shared memory: JSON values under namespaced keys, with versions and TTLs.",
    no_args_is_help=True,
)
Key = Annotated[str, typer.Argument(help="The key.", show_default=False)]
Value = Annotated[str, typer.Argument(help="The value: JSON.", show_default=False)]
Ttl = Annotated[
    float | None, typer.Option("--ttl", help="Seconds until the key expires (default: never).")
]


@command(memory_app, "put")
def put_command(
    key: Key,
    value: Value,
    namespace: NamespaceOption = None,
    ttl: Ttl = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Write a value.

    --json: {"version", "expires_at"}: the version is the write's log index; expires_at is in
    ms since the epoch, or null.
    """
    data = json_argument(value, "VALUE")
    result = call(
        cluster,
        timeout,
        lambda swarm: swarm.memory_put(key, data, namespace=namespace, ttl_seconds=ttl),
    )
    show(as_json, answer(result), _written(key, result["version"], result["expires_at"]))


@command(memory_app, "get")
def get_command(
    key: Key,
    namespace: NamespaceOption = None,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Read a key.

    --json: {"namespace", "key", "value", "version", "updated_at", "expires_at"}; an absent
    (or expired) key prints null and exits 3.
    """
    item = call(
        cluster, timeout, lambda swarm: swarm.memory_get(key, namespace=namespace, stale=stale)
    )
    if item is None:
        show(as_json, None, f"no key {key}")
        raise typer.Exit(NOTHING)
    show(as_json, item, f"{cell('value', item['value'])}\n(version {item['version']})")


@command(memory_app, "delete")
def delete_command(
    key: Key,
    namespace: NamespaceOption = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Delete a key.

    Deleting an absent key is not an error. --json: {"existed"}.
    """
    result = call(cluster, timeout, lambda swarm: swarm.memory_delete(key, namespace=namespace))
    show(as_json, answer(result), f"deleted {key}" if result["existed"] else f"no key {key}")


@command(memory_app, "cas")
def cas_command(
    key: Key,
    value: Value,
    expected: Annotated[
        str | None,
        typer.Option("--expected", help="Write only if the key holds this JSON value."),
    ] = None,
    expected_version: Annotated[
        int | None,
        typer.Option(
            "--expected-version", min=0, help="Write only if the key's version is this (0: absent)."
        ),
    ] = None,
    namespace: NamespaceOption = None,
    ttl: Ttl = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Compare-and-set.

    On the value (--expected JSON; an absent key never matches) or on the version
    (--expected-version; 0 means absent): exactly one of the two. --json: {"version",
    "expires_at"}; a mismatch is exit 1, cas_failed.
    """
    if (expected is None) == (expected_version is None):
        typer.echo("error: give exactly one of --expected and --expected-version", err=True)
        raise typer.Exit(BAD_USAGE)
    data = json_argument(value, "VALUE")
    old = json_argument(expected, "--expected") if expected is not None else None
    result = call(
        cluster,
        timeout,
        lambda swarm: swarm.memory_cas(
            key,
            data,
            expected=old,
            expected_version=expected_version,
            namespace=namespace,
            ttl_seconds=ttl,
        ),
    )
    show(as_json, answer(result), _written(key, result["version"], result["expires_at"]))


@command(memory_app, "list")
def list_command(
    prefix: Annotated[str | None, typer.Option("--prefix", help="Keys starting so.")] = None,
    namespace: NamespaceOption = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Default: 100.")] = None,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """List items by key.

    --json: an array of items (as `memory get` prints them).
    """
    items = call(
        cluster,
        timeout,
        lambda swarm: swarm.memory_list(
            prefix=prefix, namespace=namespace, limit=limit, stale=stale
        ),
    )
    columns = ("key", "value", "version", "expires_at")
    show(as_json, items, table(f"{len(items)} keys", items, columns))


def _written(key: str, version: int, expires_at: int | None) -> str:
    until = f", expires {cell('expires_at', expires_at)}" if expires_at is not None else ""
    return f"{key}: version {version}{until}"

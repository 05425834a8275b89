"""Cluster and node configuration: a TOML file, RAFT_MANAGER_* environment variables, CLI flags.

Theory of operation: one file describes the whole cluster, so every node reads the same one and
is told which node it is. Settings come, lowest priority first, from the model's defaults, the
TOML file, environment variables (`RAFT_MANAGER_TICK_MS=20`, nested with a double underscore),
and explicit overrides (CLI flags). Validation happens once, at load: an unknown key, a bad
address, a node named twice, an address used twice or an impossible timing raises ConfigError
with every problem listed.

    cluster_id = "swarm"
    tick_ms = 50                 # one Raft tick; heartbeats every tick
    election_ticks = 6           # election timeout 300 ms, randomized up to 2x
    [nodes.n1]
    address = "127.0.0.1:7001"   # Raft traffic between nodes (with transport = "tcp")
    client_address = "127.0.0.1:8001"
    data_dir = "data/n1"
    [ledger]
    max_payload_bytes = 65536    # largest task payload, result or memory value (JSON bytes)
    [security]                   # optional
    key_file = "keys.toml"       # HMAC keys: sign bus envelopes (and Raft frames, below)
    authenticate_frames = true   # MAC every Raft frame with those keys
    tls_ca_file = "ca.pem"       # TCP between nodes over mutual TLS; each node then names
                                 # tls_cert_file and tls_key_file in its [nodes.X] table
    [adapters]                   # optional: the Redis-streams bus to the swarm's peers
    redis_url = "redis://127.0.0.1:6379/0"
    peers = ["quorum-manager", "security-manager"]

Paths (data dirs, key and certificate files) relative to the file are taken from its folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from raft_manager.ledger import LedgerConfig
from raft_manager.transport.base import parse_address


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem."""


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    client_address: str
    data_dir: Path
    metrics_address: str | None = None  # serve Prometheus metrics here when set
    # A node started after the cluster formed: not one of the initial voters; it becomes a
    # member when added (`raft-manager members add`), and learns the rest from the log.
    join: bool = False
    # Removed by a membership change. The node stays in the file, so that every node computes
    # the same initial voters from it, but `cluster up` no longer starts it.
    removed: bool = False
    # Where this node dials some peers instead of their own address (node id -> address): a
    # proxy in between, as the chaos harness puts there to cut links.
    dial: dict[str, str] = Field(default_factory=dict)
    # With [security] tls_ca_file: this node's certificate (signed by that CA) and its key.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @field_validator("address", "client_address", "metrics_address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_address(value)
        return value

    @field_validator("dial")
    @classmethod
    def _valid_dial(cls, value: dict[str, str]) -> dict[str, str]:
        for address in value.values():
            parse_address(address)
        return value


PEER_ROLES = ("quorum-manager", "crdt-synchronizer", "security-manager", "performance-benchmarker")
PeerRole = Literal[
    "quorum-manager", "crdt-synchronizer", "security-manager", "performance-benchmarker"
]


def _check_redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("redis_url must start with redis://, rediss:// or unix://")
    return value


class SecurityConfig(BaseModel):
    """Keys and TLS; everything off unless named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_file: Path | None = None  # TOML or JSON key file (transport/keys.py)
    authenticate_frames: bool = False  # MAC Raft frames with the key file's keys
    frame_skew_s: float = Field(default=30.0, gt=0, le=3600)  # clock tolerance for frame keys
    tls_ca_file: Path | None = None  # mutual TLS between nodes (the tcp transport)
    tls_check_hostname: bool = True  # a peer's certificate must name the address dialled

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if self.authenticate_frames and self.key_file is None:
            raise ValueError("authenticate_frames needs a key_file")
        return self


class AdaptersConfig(BaseModel):
    """The Redis-streams bus to the swarm's peers (raft_manager/adapters/)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"  # user:password@ for an ACL user
    peers: list[PeerRole] = Field(default_factory=list)  # the peer adapters to run
    # Refuse unsigned envelopes; default: when [security] names a key file.
    require_signatures: bool | None = None
    replay_window_s: float = Field(default=30.0, ge=1, le=3600)  # envelope time vs arrival
    replay_cache: int = Field(default=100_000, ge=100, le=10_000_000)  # envelope ids remembered
    max_envelope_bytes: int = Field(default=65_536, ge=256, le=16 << 20)
    dead_letter_after: int = Field(default=5, ge=1, le=1000)  # failed deliveries
    stream_maxlen: int = Field(default=10_000, ge=100, le=100_000_000)  # MAXLEN ~ per stream
    claim_idle_ms: int = Field(default=30_000, ge=50, le=86_400_000)  # redeliver after
    handler_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    dedupe_ttl_s: float = Field(default=120.0, ge=1, le=30 * 86_400)  # handled-id records
    handled_cache: int = Field(default=10_000, ge=10, le=10_000_000)  # in-process handled ids
    publish_timeout_s: float = Field(default=10.0, gt=0, le=3600)  # retrying while Redis is away
    # The peer adapters (raft_manager/adapters/, docs/protocol.md):
    report_period_s: float = Field(default=10.0, gt=0, le=86_400)  # quorum reports, at least
    metrics_period_s: float = Field(default=10.0, gt=0, le=86_400)  # metrics snapshots
    feed_window: int = Field(default=1000, ge=1, le=100_000)  # feed events sent, not acked
    feed_resend_s: float = Field(default=5.0, gt=0, le=3600)  # resend unacked events after

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _check_redis_url(value)

    @field_validator("peers")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a peer is named twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AdaptersConfig:
        if 2 * self.handler_timeout_s * 1000 >= self.claim_idle_ms:
            raise ValueError(
                "claim_idle_ms must exceed twice handler_timeout_s (else a message still being "
                "handled could be redelivered to another consumer)"
            )
        if self.dedupe_ttl_s < 2 * self.replay_window_s:
            raise ValueError("dedupe_ttl_s must be at least twice replay_window_s")
        return self


class ClusterConfig(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid", env_prefix="RAFT_MANAGER_", env_nested_delimiter="__", frozen=True
    )

    cluster_id: str = Field(default="raft-manager", min_length=1)
    tick_ms: int = Field(default=50, ge=1, le=10_000)
    heartbeat_ticks: int = Field(default=1, ge=1)
    election_ticks: int = Field(default=6, ge=2)
    pre_vote: bool = True
    check_quorum: bool = True
    quorum_fanout: bool = True  # new entries go at once only to the followers a commit needs
    snapshot_every: int = Field(default=10_000, ge=1)
    fsync: bool = True
    transport: Literal["tcp", "redis"] = "tcp"
    redis_url: str = "redis://127.0.0.1:6379/0"  # used with transport = "redis"
    clock_ms: int = Field(default=1000, ge=10, le=600_000)  # idle leader's clock entries
    ledger: LedgerConfig = LedgerConfig()  # must be the same on every node
    security: SecurityConfig = SecurityConfig()
    adapters: AdaptersConfig | None = None
    nodes: dict[str, NodeSpec]

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _check_redis_url(value)

    @field_validator("nodes")
    @classmethod
    def _some_nodes(cls, nodes: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
        if not nodes:
            raise ValueError("name at least one node")
        for node_id in nodes:
            if not node_id or not node_id.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"node id {node_id!r}: use letters, digits, '-' and '_'")
        return nodes

    @property
    def initial_voters(self) -> tuple[str, ...]:
        return tuple(node_id for node_id, spec in self.nodes.items() if not spec.join)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if not self.initial_voters:
            raise ValueError("every node has join = true: name at least one initial voter")
        seen: dict[str, str] = {}
        for node_id, spec in self.nodes.items():
            unknown = sorted(set(spec.dial) - set(self.nodes))
            if unknown:
                raise ValueError(f"{node_id}.dial names nodes not in the file: {unknown}")
            for address in (spec.address, spec.client_address):
                if address in seen:
                    raise ValueError(f"{node_id} and {seen[address]} both use {address}")
                seen[address] = node_id
        self._check_tls()
        return self

    def _check_tls(self) -> None:
        with_tls = self.security.tls_ca_file is not None
        for node_id, spec in self.nodes.items():
            named = (spec.tls_cert_file is not None, spec.tls_key_file is not None)
            if with_tls and named != (True, True):
                raise ValueError(
                    f"security.tls_ca_file is set: node {node_id} needs tls_cert_file and "
                    "tls_key_file"
                )
            if not with_tls and any(named):
                raise ValueError(
                    f"node {node_id} names a TLS file but security.tls_ca_file is unset"
                )
        if with_tls and self.transport != "tcp":
            raise ValueError(
                "TLS between nodes is for transport = 'tcp'; for Redis, use a rediss:// URL"
            )


class _FileSource(PydanticBaseSettingsSource):
    """The TOML file's contents, as the lowest-priority settings source."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _from_sources(data: dict[str, Any], overrides: dict[str, Any]) -> ClusterConfig:
    class Loaded(ClusterConfig):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Highest priority first: explicit overrides, then the environment, then the file.
            return (init_settings, env_settings, _FileSource(settings_cls, data))

    return Loaded(**overrides)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> ClusterConfig:
    """Read and validate a cluster file. Relative data dirs are taken from the file's folder."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:  # a folder, no permission, ...
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        config = _from_sources(data, overrides or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'config'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    except SettingsError as error:  # a RAFT_MANAGER_* variable for a table that is not JSON
        cause = f": {error.__cause__}" if error.__cause__ else ""
        raise ConfigError(f"a RAFT_MANAGER_* environment variable: {error}{cause}") from None

    def here(file: Path | None) -> Path | None:
        return file if file is None or file.is_absolute() else path.parent / file

    nodes = {
        node_id: spec.model_copy(
            update={
                "data_dir": here(spec.data_dir),
                "tls_cert_file": here(spec.tls_cert_file),
                "tls_key_file": here(spec.tls_key_file),
            }
        )
        for node_id, spec in config.nodes.items()
    }
    owners: dict[Path, str] = {}  # two nodes writing one log would corrupt it
    for node_id, spec in nodes.items():
        where = spec.data_dir.resolve()
        if where in owners:
            raise ConfigError(f"{path}: {node_id} and {owners[where]} both use data_dir {where}")
        owners[where] = node_id
    security = config.security.model_copy(
        update={
            "key_file": here(config.security.key_file),
            "tls_ca_file": here(config.security.tls_ca_file),
        }
    )
    return config.model_copy(update={"nodes": nodes, "security": security})

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
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
    snapshot_every: int = Field(default=10_000, ge=1)
    fsync: bool = True
    transport: Literal["tcp", "redis"] = "tcp"
    redis_url: str = "redis://127.0.0.1:6379/0"  # used with transport = "redis"
    clock_ms: int = Field(default=1000, ge=10, le=600_000)  # idle leader's clock entries
    ledger: LedgerConfig = LedgerConfig()  # must be the same on every node
    nodes: dict[str, NodeSpec]

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

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
        return self


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
    nodes = {
        node_id: spec.model_copy(
            update={
                "data_dir": spec.data_dir
                if spec.data_dir.is_absolute()
                else path.parent / spec.data_dir
            }
        )
        for node_id, spec in config.nodes.items()
    }
    return config.model_copy(update={"nodes": nodes})

"""The core's own configuration models: the ``agent`` section, an account's core keys, a data set.

Channel plugins declare theirs (:class:`agent.channel.ChannelSettings`,
:class:`agent.channel.AccountSettings`); freshness source types theirs
(:class:`agent.freshness.source.SourceSettings`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, model_validator

from agent.checks.sharding import Shard, parse_shard
from agent.config.modelbase import ConfigModel, context, problem
from agent.config.types import Int, PositiveDuration
from agent.inventory.labels import Labels

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
MEMORY = ":memory:"  # state_path that keeps state in memory only


@dataclass
class AgentSettings:
    listen_address: str = "127.0.0.1:9877"
    state_path: Path = Path("var/agent.db")  # relative paths resolve against the config's dir
    check_interval: float = 300.0
    check_timeout: float = 30.0  # one account's whole check, retries included
    max_concurrency: int = 32
    shard: Shard = Shard()  # this replica's share of the accounts; 0/1 = all of them


def _listen_address(value: Any) -> Any:
    """``host:port``, ``[::1]:port`` or ``:port`` (all interfaces); port 0 picks a free one."""
    if not isinstance(value, str) or not _valid_listen_address(value):
        raise problem("must be HOST:PORT like 127.0.0.1:9877, [::1]:9877 or :9877")
    return value


def _valid_listen_address(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return False
    if host.startswith("[") or host.endswith("]"):
        return host.startswith("[") and host.endswith("]") and len(host) > 2
    return ":" not in host and not any(c.isspace() for c in host)


def _state_path(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise problem("must be a file path (or :memory:)")
    text = value.strip()
    if text == MEMORY:
        return Path(MEMORY)
    location = Path(text).expanduser()
    return location if location.is_absolute() else Path(context(info)["base_dir"]) / location


def _shard(value: Any) -> Shard:
    if isinstance(value, Shard):
        return value
    try:
        return parse_shard(value if isinstance(value, str) else "")
    except ValueError as exc:
        raise problem(str(exc)) from None


class AgentModel(ConfigModel):
    """The ``agent`` section."""

    listen_address: Annotated[str, BeforeValidator(_listen_address)] = Field(
        "127.0.0.1:9877", description="HOST:PORT of /metrics, the status page and the API")
    state_path: Annotated[Path, BeforeValidator(_state_path),
                          WithJsonSchema({"type": "string"})] = Field(
        "var/agent.db", description="SQLite state file (relative: to this file's directory), "
                                    "or :memory:")
    check_interval: PositiveDuration = Field("5m", description="How often each account is checked")
    check_timeout: PositiveDuration = Field(
        "30s", description="Time limit of one account's whole check, retries included")
    max_concurrency: Int = Field(32, ge=1, description="Checks running at once, at most")
    shard: Annotated[Shard, BeforeValidator(_shard), WithJsonSchema({"type": "string"})] = Field(
        "0/1", description="INDEX/COUNT or auto/COUNT: this replica's share of the accounts")

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> AgentModel:
        if self.check_timeout >= self.check_interval:
            raise problem("must be less than agent.check_interval", at="check_timeout")
        return self

    def settings(self) -> AgentSettings:
        return AgentSettings(**{name: getattr(self, name) for name in type(self).model_fields})


def _account_name(value: Any) -> Any:
    if isinstance(value, str) and not ACCOUNT_NAME.fullmatch(value):
        raise problem("must match [A-Za-z0-9_.-]+ (it becomes a Prometheus label value)")
    return value


def _region(value: Any, info: ValidationInfo) -> str:
    regions: tuple[str, ...] = context(info).get("regions", ())
    if value is None:
        if regions:
            raise problem(f"is required: one of {', '.join(regions)}")
        return ""
    if not regions:
        raise problem("this channel has no regions")
    if value not in regions:
        raise problem(f"must be one of {', '.join(regions)}")
    return value


class AccountCore(ConfigModel):
    """The keys every account has, whatever its channel."""

    core_keys = ("datasets",)

    name: Annotated[str, BeforeValidator(_account_name)] = Field(
        description="Unique within the channel; the `account` label")
    region: Annotated[str, BeforeValidator(_region)] = Field(
        None, description="One of the channel's regions (if it has any)")
    labels: Labels = Field(default_factory=dict,
                           description="Exported once, on channel_account_info (at most 10)")


class DatasetEntry(ConfigModel):
    """One data set of a channel (defaults) or an account (overrides, key by key)."""

    source: str | None = Field(None, description="a name under freshness_sources")
    max_age: PositiveDuration | None = Field(None, description="older data is stale")

"""Loading and validating the agent's configuration file.

The file becomes a tree that keeps every value's line (:mod:`agent.config.yamltree`); each
section is validated against its model (:mod:`agent.config.engine`): the ``agent`` section,
each freshness source's, each channel's and each account's, as the channel plugin declares them.
Every problem in the file is collected and reported at once in one :class:`ConfigError`.
Messages say what was expected, never what was found: after ``${VAR}`` expansion a value
may be a secret.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import create_model

from agent.channel import Account, AccountSettings, Channel, ChannelSettings
from agent.config.engine import Scope, join_key
from agent.config.freshness import FreshnessSections
from agent.config.modelbase import as_dict
from agent.config.models import (
    ACCOUNT_NAME,
    MEMORY,
    AccountCore,
    AgentModel,
    AgentSettings,
)
from agent.config.problems import (
    ConfigError,
    ConfigProblem,
    ProblemList,
    rejected,
    unknown_name,
)
from agent.config.yamlerrors import yaml_syntax_problem
from agent.config.yamltree import Node, from_python, present, read_yaml
from agent.freshness.source import Dataset, FreshnessSource
from agent.inventory.source import InventorySource
from agent.secrets.base import SecretStore
from agent.secrets.config import build_stores, resolve_references
from agent.secrets.registry import SecretStores

__all__ = ["MEMORY", "AgentSettings", "Config", "ConfigError", "ConfigProblem", "build_config",
           "load_config", "parse_account", "parse_config", "read_config_file", "unknown_name",
           "yaml_syntax_problem"]


@dataclass
class Config:
    source: str  # the file's path, "<string>" or "<demo>"
    agent: AgentSettings
    channels: dict[str, Channel]
    freshness_sources: dict[str, FreshnessSource] = field(default_factory=dict)
    datasets: list[Dataset] = field(default_factory=list)  # every account's, defaults applied
    inventory_sources: dict[str, InventorySource] = field(default_factory=dict)
    # channel -> data set -> (source, max_age): the channel-level data sets, which accounts
    # discovered by an inventory source get
    channel_datasets: dict[str, dict[str, tuple[str, float]]] = field(default_factory=dict)
    # accounts the inventory sources yield (agent.inventory), besides the file's own
    discovered: list[Account] = field(default_factory=list)
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths resolve against it
    secret_stores: SecretStores = field(default_factory=lambda: SecretStores({}))

    def accounts(self) -> list[Account]:
        """Every account of every channel: the file's own, then the discovered ones."""
        static = [account for channel in self.channels.values() for account in channel.accounts]
        return static + self.discovered if self.discovered else static


def load_config(
    path: str | Path,
    channels: Mapping[str, type[Channel]],
    environ: Mapping[str, str] | None = None,
    sources: Mapping[str, type[FreshnessSource]] | None = None,
    inventory_types: Mapping[str, type[InventorySource]] | None = None,
    stores: Mapping[str, type[SecretStore]] | None = None,
) -> Config:
    """Read and validate a configuration file; raise :class:`ConfigError` listing all problems.

    ``sources`` are the freshness source types (default: the built-in ones);
    ``inventory_types`` the inventory source types (default: the installed ones); ``stores``
    the secret store types (default: the built-in ones).
    """
    path = Path(path)
    text = read_config_file(path, "configuration file")
    base_dir = Path(os.path.abspath(path)).parent
    return parse_config(text, channels, source=str(path), base_dir=base_dir, environ=environ,
                        sources=sources, inventory_types=inventory_types, stores=stores)


def read_config_file(path: Path, what: str) -> str:
    """The text of a configuration file; one :class:`ConfigError` problem if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"cannot read the {what}: {exc.strerror or type(exc).__name__}"
    except UnicodeDecodeError:
        problem = f"the {what} is not UTF-8 text"
    raise ConfigError([ConfigProblem(str(path), None, "", problem)])


def parse_config(
    text: str,
    channels: Mapping[str, type[Channel]],
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    sources: Mapping[str, type[FreshnessSource]] | None = None,
    inventory_types: Mapping[str, type[InventorySource]] | None = None,
    stores: Mapping[str, type[SecretStore]] | None = None,
) -> Config:
    """Validate configuration YAML; relative paths resolve against ``base_dir`` (default: cwd)."""
    loader = _Loader(source, base_dir, environ, channels, sources, inventory_types, stores)
    return loader.config(read_yaml(text, loader.problems))


def build_config(
    data: Mapping[str, Any],
    channels: Mapping[str, type[Channel]],
    *,
    source: str = "<demo>",
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    sources: Mapping[str, type[FreshnessSource]] | None = None,
    inventory_types: Mapping[str, type[InventorySource]] | None = None,
    stores: Mapping[str, type[SecretStore]] | None = None,
) -> Config:
    """Validate configuration given as plain Python data (as YAML would load it)."""
    loader = _Loader(source, base_dir, environ, channels, sources, inventory_types, stores)
    return loader.config(from_python(data, loader.problems))


def parse_account(
    channel: type[Channel],
    data: Mapping[str, Any],
    *,
    where: str,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    path: str = "",
) -> Account:
    """One account of ``channel`` from plain data (a row of an inventory, an HTTP source...),
    validated exactly as an account in the file; raise :class:`ConfigError` listing every
    problem. ``where`` names the source in messages ("inventory crm, row 17"); ``path`` is the
    key path before each key ("" gives "refresh_token: is required: ...")."""
    problems = ProblemList(where)
    scope = Scope(problems, os.environ if environ is None else environ, Path(base_dir))
    account = validate_account(scope, channel, from_python(data, problems, path), path)
    if problems or account is None:
        raise problems.error()
    return account


def validate_account(scope: Scope, channel: type[Channel], node: Node, path: str,
                     core: tuple[str, ...] = (), stores: SecretStores | None = None,
                     store_names: frozenset[str] = frozenset()) -> Account | None:
    """The account at ``node`` (its problems go to ``scope``); None when it has any.
    ``stores``: what a credential may reference (``{store, key}`` or ``NAME:KEY``)."""
    if not isinstance(node.value, dict):
        scope.problems.add(node.line, path, "must be a mapping with at least a name")
        return None
    if stores is not None:
        node = resolve_references(node, channel, stores, store_names, path, scope.problems)
    model = account_model(channel)
    values = scope.validate(model, node, path, regions=channel.regions, core=core)
    return None if values is None else account_from(channel, values)


_CORE_FIELDS = frozenset(AccountCore.model_fields)  # read once: pydantic's property is slow


def account_from(channel: type[Channel], values: AccountCore) -> Account:
    """The :class:`Account` of a validated account model."""
    settings = {name: value for name, value in as_dict(values).items()
                if name not in _CORE_FIELDS}
    # one string object per channel, region and label, however many accounts share them;
    # the name too, which the fleet's keys and often a label (merchant) repeat
    intern = sys.intern
    return Account(channel=intern(channel.name), name=intern(values.name),
                   region=intern(values.region), settings=settings,
                   labels={intern(k): intern(v) for k, v in values.labels.items()})


@cache
def account_model(channel: type[Channel]) -> type[AccountCore]:
    """The model of one account of ``channel``: the core's keys, then the plugin's."""
    return create_model(f"{channel.__name__}Account",
                        __base__=(channel.AccountSettings, AccountCore))


class _Loader(FreshnessSections):
    """Turns a tree into a Config, recording every problem on the way."""

    def __init__(
        self,
        source: str,
        base_dir: Path | None,
        environ: Mapping[str, str] | None,
        channels: Mapping[str, type[Channel]],
        source_types: Mapping[str, type[FreshnessSource]] | None = None,
        inventory_types: Mapping[str, type[InventorySource]] | None = None,
        store_types: Mapping[str, type[SecretStore]] | None = None,
    ) -> None:
        self.inventory_types = inventory_types  # None: the installed ones
        self.store_types = store_types  # None: the built-in ones
        self.secret_stores = SecretStores({})
        self.store_names: frozenset[str] = frozenset()  # every store configured, built or not
        self.inventory: dict[str, InventorySource] = {}
        self.fed_channels: set[str] = set()  # channels an inventory source feeds
        self.channel_datasets: dict[str, dict[str, tuple[str, float]]] = {}
        self.problems = ProblemList(source)
        self.scope = Scope(self.problems, os.environ if environ is None else environ,
                           Path(base_dir) if base_dir is not None else Path.cwd())
        self.registry = channels
        self.source_types = _builtin_source_types() if source_types is None else source_types
        self.freshness: dict[str, FreshnessSource | None] = {}  # None: reported as a problem
        self.datasets: list[Dataset] = []

    def problem(self, line: int | None, path: str, message: str) -> None:
        self.problems.add(line, path, message)

    def config(self, root: Node) -> Config:
        if not isinstance(root.value, dict):
            self.problem(root.line, "", "the configuration must be a mapping with the keys "
                                        "'agent' and 'channels'")
            raise self.problems.error()
        top = ["agent", "channels", "freshness_sources", "inventory_sources", "secret_stores"]
        for key, line in root.key_lines.items():
            if key not in top:
                self.problem(line, key, unknown_name("key", key, top))
        agent = self.scope.validate(AgentModel, present(root, "agent") or Node({}, root.line),
                                    "agent")
        self._freshness_sources(root)
        self._secret_stores(root)
        self._inventory_sources(root)
        sections = self._channels(root)
        if self.problems or agent is None:
            raise self.problems.error()
        channels = {}
        lines = root.value["channels"].key_lines
        for name, (cls, settings, accounts) in sections.items():
            try:
                channels[name] = cls(settings=settings, accounts=accounts)
            except Exception as exc:  # a plugin's own validation, or its bug
                self.problem(lines.get(name), join_key("channels", name),
                             f"the channel plugin rejected its settings: {rejected(exc)}")
        if self.problems:
            raise self.problems.error()
        sources = {name: source for name, source in self.freshness.items() if source is not None}
        return Config(source=self.problems.source, agent=agent.settings(), channels=channels,
                      freshness_sources=sources, datasets=self.datasets,
                      inventory_sources=self.inventory, channel_datasets=self.channel_datasets,
                      base_dir=self.scope.base_dir, secret_stores=self.secret_stores)

    def _secret_stores(self, root: Node) -> None:
        """``secret_stores``: each type's pydantic model, built by agent.secrets.config."""
        node = present(root, "secret_stores")
        if node is None:
            return
        types = self.store_types if self.store_types is not None else _builtin_store_types()
        stores, self.store_names = build_stores(self.scope, node, types)
        self.secret_stores = SecretStores(stores)

    def _inventory_sources(self, root: Node) -> None:
        """``inventory_sources``: validated and built by agent.inventory.settings."""
        from agent.inventory.settings import inventory_sources

        node = present(root, "inventory_sources")
        if node is None:
            return
        channels = present(root, "channels")
        configured = set(channels.value) if channels and isinstance(channels.value, dict) else set()
        types = self.inventory_types
        if types is None:
            types = _installed_inventory_types()
        self.inventory, self.fed_channels = inventory_sources(self, node, configured, dict(types))

    # --- channels and accounts ----------------------------------------------------------

    def _channels(self, root: Node) -> dict[str, tuple[type[Channel], dict, list[Account]]]:
        node = present(root, "channels")
        known = ", ".join(sorted(self.registry)) or "none installed"
        if node is None:
            self.problem(root.line, "channels",
                         f"is required: configure at least one channel (known: {known})")
            return {}
        if not isinstance(node.value, dict):
            self.problem(node.line, "channels", "must be a mapping of channel name to settings")
            return {}
        if not node.value:
            self.problem(node.line, "channels",
                         f"must configure at least one channel (known: {known})")
        sections = {}
        for name, child in node.value.items():
            path = join_key("channels", name)
            cls = self.registry.get(name)
            if cls is None:
                message = unknown_name("channel", name, sorted(self.registry))
                if not self.registry:
                    message += "; no channel plugin is installed"
                self.problem(node.key_lines[name], path, message)
                continue
            section = self._channel(cls, child, path)
            if section is not None:
                sections[name] = section
        return sections

    def _channel(self, cls: type[Channel], node: Node,
                 path: str) -> tuple[type[Channel], dict, list[Account]] | None:
        if not (issubclass(cls.Settings, ChannelSettings)
                and issubclass(cls.AccountSettings, AccountSettings)):
            self.problem(node.line, path, "the channel plugin's Settings and AccountSettings "
                         "must subclass agent.channel.ChannelSettings and AccountSettings")
            return None
        values = self.scope.validate(cls.Settings, node, path, regions=cls.regions,
                                     core=ChannelSettings.core_keys)
        if not isinstance(node.value, dict):
            return None
        dataset_defaults = self._dataset_entries(node, path)
        self.channel_datasets[cls.name] = {
            dataset: (given["source"], given["max_age"])
            for dataset, (given, _, _) in dataset_defaults.items()
            if not given.get("invalid") and given["source"] is not None
            and given["max_age"] is not None}
        accounts_path = join_key(path, "accounts")
        accounts_node = present(node, "accounts")
        fed = cls.name in self.fed_channels  # accounts may all come from inventory sources
        if accounts_node is None and fed:
            return (cls, as_dict(values), []) if values is not None else None
        if accounts_node is None:
            self.problem(node.line, accounts_path, "is required: list at least one account "
                                                   "(or feed the channel from an inventory "
                                                   "source)")
            return None
        if not isinstance(accounts_node.value, list):
            self.problem(accounts_node.line, accounts_path, "must be a list of accounts")
            return None
        if not accounts_node.value and not fed:
            self.problem(accounts_node.line, accounts_path, "must list at least one account")
        accounts = []
        names: dict[str, int] = {}
        for i, item in enumerate(accounts_node.value):
            account_path = f"{accounts_path}[{i}]"
            account = validate_account(self.scope, cls, item, account_path, ("datasets",),
                                       stores=self.secret_stores,
                                       store_names=self.store_names)
            name = self._account_name(item)
            if name is None:
                continue
            if name in names:
                self.problem(item.key_lines.get("name", item.line), f"{account_path}.name",
                             f"duplicate account name: accounts[{names[name]}] already uses it")
                continue
            names[name] = i
            if account is not None:
                accounts.append(account)
                self._account_datasets(account, dataset_defaults,
                                       self._dataset_entries(item, account_path))
        if values is None:
            return None
        return cls, as_dict(values), accounts

    def _account_name(self, node: Node) -> str | None:
        """The account's name when it is a valid one (its problems are reported already)."""
        child = present(node, "name")
        if child is None or not isinstance(child.value, str):
            name = child.text if child is not None else None
        else:  # its problems were reported when the account was validated
            quiet = Scope(ProblemList(""), self.scope.environ, self.scope.base_dir)
            name = quiet.expand(child.value, child.line, "")
        return name if isinstance(name, str) and ACCOUNT_NAME.fullmatch(name) else None


def _installed_inventory_types() -> Mapping[str, type[InventorySource]]:
    from agent.plugins import load_plugins

    return load_plugins().inventory_sources


def _builtin_source_types() -> Mapping[str, type[FreshnessSource]]:
    from agent.plugins import load_plugins

    return load_plugins(entry_points=False).freshness_sources


def _builtin_store_types() -> Mapping[str, type[SecretStore]]:
    from agent.plugins import load_plugins

    return load_plugins(entry_points=False).secret_stores

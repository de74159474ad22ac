"""Loading and validating the agent's configuration file.

The file is read with ``yaml.compose`` so every value keeps its line number; it is then
checked against the options each channel plugin declares (:class:`agent.channel.Option`).
Every problem in the file is collected and reported at once in one :class:`ConfigError`.
Messages say what was expected, never what was found: after ``${VAR}`` expansion a value
may be a secret.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agent.channel import Account, Channel, MissingSecret, Option, Secret, SecretRef
from agent.checks.ratelimit import CHANNEL_OPTIONS
from agent.checks.sharding import Shard, parse_shard
from agent.config.durations import DURATION_HINT, parse_duration
from agent.freshness.source import DEFAULT_TIMEOUT, Dataset, FreshnessSource
from agent.inventory.source import InventorySource
from agent.redact import redact
from agent.secrets.base import SecretStore
from agent.secrets.config import build_stores, parse_reference
from agent.secrets.registry import SecretStores

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# libyaml's parser when PyYAML has it: 10,000 accounts parse in a fraction of the time
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MEMORY = ":memory:"  # state_path that keeps state in memory only
# How many values a YAML file may expand to: plenty for anchors merged into every account.
MIN_NODE_BUDGET = 10_000
NODES_PER_CHAR = 10


@dataclass
class AgentSettings:
    listen_address: str = "127.0.0.1:9877"
    state_path: Path = Path("var/agent.db")  # relative paths resolve against the config's dir
    check_interval: float = 300.0
    check_timeout: float = 30.0  # one account's whole check, retries included
    max_concurrency: int = 32
    shard: Shard = Shard()  # this replica's share of the accounts; 0/1 = all of them


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


@dataclass(frozen=True)
class ConfigProblem:
    source: str
    line: int | None
    path: str  # e.g. "channels.amazon_ads.accounts[0].region"; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


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
    ``inventory_types`` the inventory source types (default: the installed ones), ``stores``
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
    validator = _Validator(source, base_dir, environ, channels, sources, inventory_types,
                           store_types=stores)
    # Aliases may repeat a subtree any number of times ("billion laughs"); bounding the values
    # built by the input's size keeps validation linear in it.
    budget = MIN_NODE_BUDGET + NODES_PER_CHAR * len(text)
    validator.node_budget = budget
    try:
        root = _compose(text)
        tree = _Node({}, None) if root is None else validator.from_yaml(root, "")
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_syntax_problem(source, exc)]) from None
    except RecursionError:
        problem = "values are nested too deeply to be a configuration"
        raise ConfigError([ConfigProblem(source, None, "", problem)]) from None
    except _TooLarge:
        problem = ("the file expands to too many values through YAML aliases "
                   f"(more than {budget}); refusing to read it")
        raise ConfigError([ConfigProblem(source, None, "", problem)]) from None
    return validator.config(tree)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
        # Python's parser again, for its wording and positions of the problem (and its own
        # depth limit): errors read the same whichever parser PyYAML was built with.
        return yaml.compose(text, Loader=yaml.SafeLoader)


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
    validator = _Validator(source, base_dir, environ, channels, sources, inventory_types,
                           store_types=stores)
    return validator.config(validator.from_python(data, ""))


def yaml_syntax_problem(source: str, exc: yaml.YAMLError) -> ConfigProblem:
    # str(exc) quotes the offending line of the file, which may hold a secret: use only the
    # parser's own description and the position.
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None),
             getattr(exc, "reason", None)]  # a ReaderError: a character YAML does not accept
    detail = ", ".join(part for part in parts if part) or type(exc).__name__
    line = mark.line + 1 if mark is not None else None
    return ConfigProblem(source, line, "", f"invalid YAML: {detail}")


@dataclass
class _Node:
    """A configuration value with its line: a dict or list of _Node, or a scalar."""

    value: Any
    line: int | None
    text: str | None = None  # a YAML scalar as written, for str options given e.g. a number
    key_lines: dict[str, int | None] = field(default_factory=dict)  # mapping key -> its line


_INVALID = object()  # a value that was reported as a problem


class _TooLarge(Exception):
    """The YAML tree grew past the validator's node budget."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_SECRET_KINDS = ("secret", "secret_ref")
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_ENV_INNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

_AGENT_OPTIONS: dict[str, Option] = {
    "listen_address": Option("str", default=AgentSettings.listen_address),
    "state_path": Option("str", default=str(AgentSettings.state_path)),
    "check_interval": Option("duration", default=AgentSettings.check_interval),
    "check_timeout": Option("duration", default=AgentSettings.check_timeout),
    "max_concurrency": Option("int", default=AgentSettings.max_concurrency),
    "shard": Option("str", default=str(AgentSettings.shard)),
}

_DATASET_OPTIONS: dict[str, Option] = {
    "source": Option("str", doc="a name under freshness_sources"),
    "max_age": Option("duration", doc="older data is stale"),
}

_EXPECTED: dict[str, str] = {
    "str": "must be a string",
    "int": "must be an integer",
    "float": "must be a number",
    "bool": "must be true or false",
    "duration": f"must be {DURATION_HINT}",
    "int_list": "must be a list of integers (or a comma-separated string of them)",
    "str_list": "must be a list of strings",
    "url": "must be an http(s) URL with a host, like https://example.com/path",
    "path": "must be a file path",
    "mapping": "must be a mapping",
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def unknown_name(what: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown {what} '{name}' (did you mean '{close[0]}'?)"
    if not known:
        return f"unknown {what} '{name}' (none are accepted here)"
    return f"unknown {what} '{name}' (expected one of: {', '.join(known)})"


class _Validator:
    """Turns a _Node tree into a Config, recording every problem on the way."""

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
        self.source = source
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.environ = os.environ if environ is None else environ
        self.registry = channels
        self.source_types = _builtin_source_types() if source_types is None else source_types
        self.freshness: dict[str, FreshnessSource | None] = {}  # None: reported as a problem
        self.store_types = store_types
        self.secret_stores = SecretStores({})
        self.store_names: set[str] = set()  # every store configured, built or not
        self.account_context = ("", "")  # (channel, account) being validated, for references
        self.datasets: list[Dataset] = []
        self.channel_datasets: dict[str, dict[str, tuple[str, float]]] = {}
        self.inventory: dict[str, InventorySource] = {}
        self.fed_channels: set[str] = set()  # channels an inventory source feeds
        self.problems: list[ConfigProblem] = []
        self.regions: tuple[str, ...] = ()  # of the channel being validated
        self._constructor = yaml.constructor.SafeConstructor()
        self._building: set[int] = set()  # YAML nodes being converted, to stop alias cycles
        self.node_budget: int | None = None  # values from_yaml may still build; None = no limit

    def problem(self, line: int | None, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.source, line, path, message))

    # --- building the tree --------------------------------------------------------------

    def from_yaml(self, node: yaml.Node, path: str) -> _Node:
        line = node.start_mark.line + 1
        if self.node_budget is not None:
            self.node_budget -= 1
            if self.node_budget < 0:
                raise _TooLarge
        if id(node) in self._building:
            self.problem(line, path, "refers to itself through a YAML alias")
            return _Node(None, line)
        self._building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._yaml_mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                items = [self.from_yaml(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
                return _Node(items, line)
            return self._yaml_scalar(node, path)
        finally:
            self._building.discard(id(node))

    def _yaml_mapping(self, node: yaml.MappingNode, path: str) -> _Node:
        result = _Node({}, node.start_mark.line + 1)
        merges = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_line, path, "mapping keys must be plain strings")
                continue
            key = key_node.value
            if key in result.value:
                first = result.key_lines[key]
                self.problem(key_line, _join(path, key), f"duplicate key (first at line {first})")
                continue
            child = self.from_yaml(value_node, _join(path, key))
            if isinstance(child.value, dict):
                # a key missing from a block mapping is best shown at its parent key's line
                child.line = key_line
            result.value[key] = child
            result.key_lines[key] = key_line
        for merge in merges:
            self._merge(result, merge, path)
        return result

    def _merge(self, target: _Node, merge: yaml.Node, path: str) -> None:
        """YAML merge keys (``<<: *defaults``): keys given explicitly win."""
        sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
        for source in sources:
            merged = self.from_yaml(source, path)
            if not isinstance(merged.value, dict):
                self.problem(merged.line, path, "'<<' must merge a mapping")
                continue
            for key, child in merged.value.items():
                if key not in target.value:
                    target.value[key] = child
                    target.key_lines[key] = merged.key_lines[key]

    def _yaml_scalar(self, node: yaml.Node, path: str) -> _Node:
        line = node.start_mark.line + 1
        if node.tag == _STR_TAG:  # what the constructor would return, without its overhead
            return _Node(node.value, line, text=node.value)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError):
            self.problem(line, path, f"cannot read this value with YAML tag {node.tag}")
            return _Node(_INVALID, line)
        return _Node(value, line, text=node.value)

    def from_python(self, data: Any, path: str) -> _Node:
        if isinstance(data, Mapping):
            result = _Node({}, None)
            for key, value in data.items():
                if not isinstance(key, str):
                    self.problem(None, path, "mapping keys must be strings")
                    continue
                result.value[key] = self.from_python(value, _join(path, key))
                result.key_lines[key] = None
            return result
        if isinstance(data, list | tuple):
            return _Node([self.from_python(item, f"{path}[{i}]") for i, item in enumerate(data)],
                         None)
        if isinstance(data, Path):
            return _Node(str(data), None)
        return _Node(data, None)

    # --- the whole file -----------------------------------------------------------------

    def config(self, root: _Node) -> Config:
        if not isinstance(root.value, dict):
            self.problem(root.line, "", "the configuration must be a mapping with the keys "
                                        "'agent' and 'channels'")
            raise self.error()
        self._check_keys(root, "", {"agent", "channels", "freshness_sources",
                                    "inventory_sources", "secret_stores"})
        agent = self._agent(root)
        self._freshness_sources(root)
        self._secret_stores(root)
        self._inventory_sources(root)
        sections = self._channels(root)
        if self.problems or agent is None:
            raise self.error()
        channels = {}
        lines = root.value["channels"].key_lines
        for name, (cls, settings, accounts) in sections.items():
            try:
                channels[name] = cls(settings=settings, accounts=accounts)
            except Exception as exc:  # a plugin's own validation, or its bug
                self.problem(lines.get(name), _join("channels", name),
                             f"the channel plugin rejected its settings: {_rejected(exc)}")
        if self.problems:
            raise self.error()
        sources = {name: source for name, source in self.freshness.items() if source is not None}
        return Config(source=self.source, agent=agent, channels=channels,
                      freshness_sources=sources, datasets=self.datasets,
                      inventory_sources=self.inventory, channel_datasets=self.channel_datasets,
                      base_dir=self.base_dir, secret_stores=self.secret_stores)

    def error(self) -> ConfigError:
        unique = list(dict.fromkeys(self.problems))
        unique.sort(key=lambda p: (p.line is None, p.line or 0))
        return ConfigError(unique)

    def _check_keys(self, section: _Node, path: str, accepted: Iterable[str]) -> None:
        accepted = set(accepted)
        for key, line in section.key_lines.items():
            if key not in accepted:
                self.problem(line, _join(path, key), unknown_name("key", key, sorted(accepted)))

    # --- agent --------------------------------------------------------------------------

    def _agent(self, root: _Node) -> AgentSettings | None:
        node = self._present(root, "agent") or _Node({}, root.line)
        values = self._section(node, _AGENT_OPTIONS, "agent")
        if values is None:
            return None
        for key, message in list(_agent_problems(values)):
            self.problem(node.key_lines.get(key, node.line), f"agent.{key}", message)
            values[key] = _INVALID
        if _INVALID in values.values():
            return None
        state_path = values["state_path"].strip()
        return AgentSettings(
            listen_address=values["listen_address"],
            state_path=Path(MEMORY) if state_path == MEMORY else self._resolve(state_path),
            check_interval=values["check_interval"],
            check_timeout=values["check_timeout"],
            max_concurrency=values["max_concurrency"],
            shard=parse_shard(values["shard"]),
        )

    # --- channels and accounts ----------------------------------------------------------

    def _channels(self, root: _Node) -> dict[str, tuple[type[Channel], dict, list[Account]]]:
        node = self._present(root, "channels")
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
            path = _join("channels", name)
            cls = self.registry.get(name)
            if cls is None:
                message = unknown_name("channel", name, sorted(self.registry))
                if not self.registry:
                    message += "; no channel plugin is installed"
                self.problem(node.key_lines[name], path, message)
                continue
            section = self._channel(name, cls, child, path)
            if section is not None:
                sections[name] = section
        return sections

    def _channel(
        self, name: str, cls: type[Channel], node: _Node, path: str
    ) -> tuple[type[Channel], dict, list[Account]] | None:
        self.regions = tuple(cls.regions)
        options = {**CHANNEL_OPTIONS, **cls.channel_options}
        settings = self._section(node, options, path, core=("accounts", "datasets"))
        if settings is None:
            return None
        rate = settings["max_requests_per_second"]
        if rate is not _INVALID and rate < 0:
            self.problem(node.key_lines.get("max_requests_per_second", node.line),
                         _join(path, "max_requests_per_second"), "must be 0 (no limit) or more")
        dataset_defaults = self._dataset_entries(node, path)
        self.channel_datasets[name] = {
            dataset: (values["source"], values["max_age"])
            for dataset, (values, _, _) in dataset_defaults.items()
            if values["source"] not in (None, _INVALID) and values["max_age"] not in (None,
                                                                                   _INVALID)}
        accounts_path = _join(path, "accounts")
        accounts_node = self._present(node, "accounts")
        fed = name in self.fed_channels  # accounts may all come from inventory sources
        if accounts_node is None and fed:
            return cls, settings, []
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
            account_name = self._account_name(item, account_path)
            account = self._account(name, cls, item, account_path, account_name)
            if account_name is _INVALID:
                continue
            if account_name in names:
                self.problem(item.key_lines.get("name", item.line), f"{account_path}.name",
                             f"duplicate account name: accounts[{names[account_name]}] "
                             f"already uses it")
                continue
            names[account_name] = i
            if account is not None:
                accounts.append(account)
                self._account_datasets(account, dataset_defaults,
                                       self._dataset_entries(item, account_path))
        return cls, settings, accounts

    def _account(
        self, channel: str, cls: type[Channel], node: _Node, path: str, name: Any
    ) -> Account | None:
        if not isinstance(node.value, dict):
            return None
        self.account_context = (channel, name if isinstance(name, str) else "")
        settings = self._section(node, cls.account_options, path,
                                 core=("name", "region", "datasets", "labels"))
        region = self._region(node, path)
        labels = self._labels(node, path)
        if settings is None or _INVALID in (name, region, labels):
            return None
        return Account(channel=channel, name=name, region=region, settings=settings,
                       labels=labels)

    def _labels(self, node: _Node, path: str) -> Any:
        """A ``labels:`` map of label name to value (agent.inventory.labels rules)."""
        from agent.inventory.labels import label_problems

        child = self._present(node, "labels")
        if child is None:
            return {}
        path = _join(path, "labels")
        if not isinstance(child.value, dict):
            return self._expected(child, path, "mapping")
        labels = {key: self._str(value, _join(path, key)) for key, value in child.value.items()}
        if _INVALID in labels.values():
            return _INVALID
        problems = list(label_problems(labels))
        for key, message in problems:
            self.problem(child.key_lines.get(key, child.line), _join(path, key) if key else path,
                         message)
        return _INVALID if problems else labels

    def _inventory_sources(self, root: _Node) -> None:
        """``inventory_sources``: validated and built by agent.inventory.settings."""
        from agent.inventory.settings import inventory_sources

        node = self._present(root, "inventory_sources")
        if node is None:
            return
        channels = self._present(root, "channels")
        configured = set(channels.value) if channels and isinstance(channels.value, dict) else set()
        types = self.inventory_types
        if types is None:
            types = _installed_inventory_types()
        self.inventory, self.fed_channels = inventory_sources(self, node, configured, dict(types))

    def _account_name(self, node: _Node, path: str) -> Any:
        if not isinstance(node.value, dict):
            self.problem(node.line, path, "must be a mapping with at least a name")
            return _INVALID
        child = self._present(node, "name")
        if child is None:
            self.problem(node.line, _join(path, "name"), "is required")
            return _INVALID
        name = self._str(child, _join(path, "name"))
        if name is not _INVALID and not ACCOUNT_NAME.fullmatch(name):
            self.problem(child.line, _join(path, "name"),
                         "must match [A-Za-z0-9_.-]+ (it becomes a Prometheus label value)")
            return _INVALID
        return name

    def _region(self, node: _Node, path: str) -> Any:
        child = self._present(node, "region")
        if not self.regions:
            if child is not None:
                self.problem(child.line, _join(path, "region"), "this channel has no regions")
                return _INVALID
            return ""
        if child is None:
            self.problem(node.line, _join(path, "region"),
                         f"is required: one of {', '.join(self.regions)}")
            return _INVALID
        return self._choice(self._str(child, _join(path, "region")), self.regions, child,
                            _join(path, "region"))

    # --- freshness sources and data sets ------------------------------------------------

    def _freshness_sources(self, root: _Node) -> None:
        """Validate ``freshness_sources`` and build each source into ``self.freshness``."""
        node = self._present(root, "freshness_sources")
        if node is None:
            return
        if not isinstance(node.value, dict):
            self.problem(node.line, "freshness_sources",
                         "must be a mapping of source name to settings")
            return
        known = ", ".join(sorted(self.source_types)) or "none installed"
        for name, child in node.value.items():
            path = _join("freshness_sources", name)
            self.freshness[name] = None
            if not ACCOUNT_NAME.fullmatch(name):
                self.problem(node.key_lines[name], path,
                             "the name must match [A-Za-z0-9_.-]+ (it becomes a label value)")
                continue
            if not isinstance(child.value, dict):
                self.problem(child.line, path, f"must be a mapping with a type ({known})")
                continue
            type_node = self._present(child, "type")
            if type_node is None:
                self.problem(child.line, _join(path, "type"), f"is required: one of {known}")
                continue
            type_name = self._str(type_node, _join(path, "type"))
            cls = self.source_types.get(type_name) if type_name is not _INVALID else None
            if cls is None:
                if type_name is not _INVALID:
                    self.problem(type_node.line, _join(path, "type"),
                                 unknown_name("freshness source type", type_name,
                                          sorted(self.source_types)))
                continue
            self.freshness[name] = self._freshness_source(name, cls, child, path)

    def _freshness_source(self, name: str, cls: type[FreshnessSource], node: _Node,
                          path: str) -> FreshnessSource | None:
        options = dict(cls.options)
        if not cls.push:
            options["interval"] = Option("duration", default=cls.default_interval)
            options["timeout"] = Option("duration", default=DEFAULT_TIMEOUT)
        settings = self._section(node, options, path, core=("type",))
        if settings is None:
            return None
        interval, timeout = settings.get("interval"), settings.get("timeout")
        for key, value in (("interval", interval), ("timeout", timeout)):
            if key in settings and value is not _INVALID and value <= 0:
                self.problem(node.key_lines.get(key, node.line), _join(path, key),
                             "must be more than 0")
                settings[key] = _INVALID
        if _INVALID not in (interval, timeout) and not cls.push and timeout >= interval:
            self.problem(node.key_lines.get("timeout", node.line), _join(path, "timeout"),
                         f"must be less than {path}.interval")
            return None
        if _INVALID in settings.values():
            return None
        try:
            return cls(name=name, settings=settings)
        except Exception as exc:  # the type's own validation, or its bug
            self.problem(node.line, path,
                         f"the freshness source type rejected its settings: {_rejected(exc)}")
            return None

    def _dataset_entries(self, node: _Node, path: str) -> dict[str, tuple[dict, str, _Node]]:
        """The ``datasets`` of a channel or account: name -> (given values, path, node)."""
        path = _join(path, "datasets")
        datasets = self._present(node, "datasets")
        if datasets is None or not isinstance(node.value, dict):
            return {}
        if not isinstance(datasets.value, dict):
            self.problem(datasets.line, path,
                         "must be a mapping of data set name to {source, max_age}")
            return {}
        entries = {}
        for name, entry in datasets.value.items():
            entry_path = _join(path, name)
            if not ACCOUNT_NAME.fullmatch(name):
                self.problem(datasets.key_lines[name], entry_path,
                             "the name must match [A-Za-z0-9_.-]+ (it becomes a label value)")
                continue
            if entry.value is None:
                entry = _Node({}, datasets.key_lines[name])
            values = self._section(entry, _DATASET_OPTIONS, entry_path)
            if values is None:
                continue
            source = values["source"]
            if source not in (None, _INVALID) and source not in self.freshness:
                self.problem(entry.key_lines.get("source"), _join(entry_path, "source"),
                             unknown_name("freshness source", source, sorted(self.freshness)))
                values["source"] = _INVALID
            if values["max_age"] not in (None, _INVALID) and values["max_age"] <= 0:
                self.problem(entry.key_lines.get("max_age"), _join(entry_path, "max_age"),
                             "must be more than 0")
                values["max_age"] = _INVALID
            entries[name] = (values, entry_path, entry)
        return entries

    def _account_datasets(self, account: Account, defaults: dict, own: dict) -> None:
        """The account's data sets: the channel's ``datasets``, overridden key by key."""
        for name in [*defaults, *(n for n in own if n not in defaults)]:
            default_values, default_path, default_node = defaults.get(name, ({}, None, None))
            values, where_path, where_node = own.get(name, (default_values, default_path,
                                                            default_node))
            merged = {k: v for k, v in default_values.items() if v is not None}
            merged.update({k: v for k, v in values.items() if v is not None})
            if _INVALID in merged.values():
                continue  # reported already
            missing = [key for key in ("source", "max_age") if key not in merged]
            for key in missing:
                also = f" (here or in {default_path})" if default_path and name in own else ""
                self.problem(where_node.line, _join(where_path, key), f"is required{also}")
            if not missing:
                self.datasets.append(Dataset(
                    channel=account.channel, account=account.name, region=account.region,
                    name=name, source=merged["source"], max_age=merged["max_age"]))

    # --- options ------------------------------------------------------------------------

    def _section(
        self, node: _Node, options: Mapping[str, Option], path: str, core: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        """Every option of a mapping, defaults filled in; None if it is not a mapping."""
        if not isinstance(node.value, dict):
            self.problem(node.line, path, _EXPECTED["mapping"])
            return None
        accepted = set(core)
        for name, option in options.items():
            accepted.add(name)
            if option.kind in _SECRET_KINDS:
                accepted.add(f"{name}_file")
        self._check_keys(node, path, accepted)
        return {name: self._option(node, name, option, path) for name, option in options.items()}

    def _option(self, section: _Node, name: str, option: Option, path: str) -> Any:
        path = _join(path, name)
        if option.kind in _SECRET_KINDS:
            return self._secret_option(section, name, option, path)
        if option.kind not in _CONVERTERS:
            self.problem(section.line, path,
                         f"the channel plugin declares an unknown option kind '{option.kind}'")
            return _INVALID
        child = self._present(section, name)
        if child is None and option.kind == "mapping":
            child = _Node({}, section.line)  # nested defaults and required keys still apply
        if child is None:
            if option.required:
                self.problem(section.line, path, "is required")
                return _INVALID
            return self._default(option)
        value = _CONVERTERS[option.kind](self, child, option, path)
        if option.choices is None or value is _INVALID:
            return value
        if option.kind not in ("int_list", "str_list"):
            return self._choice(value, option.choices, child, path)
        checked = [
            self._choice(item, option.choices, _item_node(child, i), f"{path}[{i}]")
            for i, item in enumerate(value)
        ]
        return _INVALID if _INVALID in checked else checked

    def _choice(self, value: Any, choices: Iterable[Any], node: _Node, path: str) -> Any:
        choices = tuple(choices)
        if value is _INVALID or value in choices:
            return value
        self.problem(node.line, path, f"must be one of {', '.join(str(c) for c in choices)}")
        return _INVALID

    def _default(self, option: Option) -> Any:
        default = option.default
        if option.kind == "duration" and default is not None:
            return parse_duration(default) if isinstance(default, str) else float(default)
        if option.kind == "regional_url" and isinstance(default, str):
            return {region: default for region in self.regions or ("",)}
        return copy.deepcopy(default)

    def _secret_option(self, section: _Node, name: str, option: Option, path: str) -> Any:
        inline = self._present(section, name)
        file = self._present(section, f"{name}_file")
        file_path = f"{path}_file"
        if inline is not None and file is not None:
            self.problem(file.line, file_path, f"give either {name} or {name}_file, not both")
            return _INVALID
        if inline is not None and option.kind == "secret_ref":
            reference = self._store_reference(inline, path)
            if reference is not None:
                return reference
        if inline is not None:
            text = self._str(inline, path)
            if text is _INVALID:
                return _INVALID
            if not text.strip():
                self.problem(inline.line, path, "must not be empty")
                return _INVALID
            secret = Secret(text.strip())
            return secret if option.kind == "secret" else SecretRef(value=secret, source=path)
        if file is not None:
            location = self._file_path(file, file_path)
            if location is _INVALID:
                return _INVALID
            if option.kind == "secret_ref":  # read at check time: the file may appear later
                return SecretRef(path=location, source=file_path)
            return self._read_secret(location, file, file_path)
        if option.required:
            self.problem(section.line, path, f"is required: set {name} or {name}_file")
            return _INVALID
        return copy.deepcopy(option.default)

    def _store_reference(self, node: _Node, path: str) -> Any:
        """A :class:`SecretRef` into a secret store for ``{store: NAME, key: KEY}`` or
        ``NAME:KEY`` (the text as written, before ``${VAR}`` expansion, so a secret from the
        environment is never taken for a reference); None for an inline secret."""
        stores = self.secret_stores.stores
        parsed = parse_reference(_plain(node), self.store_names)
        if parsed is None:
            return None
        if isinstance(parsed, str):
            self.problem(node.line, path, parsed)
            return _INVALID
        store, key, mode = parsed
        if store not in stores:
            return _INVALID  # the store's own problems are reported
        channel, account = self.account_context
        try:
            located = stores[store].locate(key, channel, account)
        except ValueError as exc:
            self.problem(node.line, _join(path, "key"), f"secret store {store}: {exc}")
            return _INVALID
        return self.secret_stores.ref(store, located, source=path, mode=mode)

    def _secret_stores(self, root: _Node) -> None:
        """Validate ``secret_stores`` (each type's pydantic model) and build the stores."""
        node = self._present(root, "secret_stores")
        if node is None:
            return
        types = self.store_types if self.store_types is not None else _builtin_store_types()
        data = self._expanded(node, "secret_stores")
        stores, problems = build_stores(data, types, self.base_dir)
        self.store_names = set(data) if isinstance(data, dict) else set()
        for path, message in problems:
            self.problem(_line_of(node, path.split(".")[1:]), path, message)
        self.secret_stores = SecretStores(stores)

    def _expanded(self, node: _Node, path: str) -> Any:
        """Plain data of a subtree, every string ``${VAR}``-expanded."""
        if isinstance(node.value, dict):
            return {key: self._expanded(child, _join(path, key))
                    for key, child in node.value.items()}
        if isinstance(node.value, list):
            return [self._expanded(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node.value, str):
            value = self._expand(node.value, node, path)
            return None if value is _INVALID else value
        return node.value

    def _read_secret(self, location: Path, node: _Node, path: str) -> Any:
        try:
            return SecretRef(path=location, source=path).read()
        except MissingSecret as exc:
            self.problem(node.line, path, exc.problem)
            return _INVALID

    def _file_path(self, node: _Node, path: str) -> Any:
        text = self._str(node, path)
        if text is _INVALID:
            return _INVALID
        if not text.strip():
            self.problem(node.line, path, "must be a file path")
            return _INVALID
        return self._resolve(text.strip())

    def _resolve(self, text: str) -> Path:
        location = Path(text).expanduser()
        return location if location.is_absolute() else self.base_dir / location

    # --- scalars ------------------------------------------------------------------------

    @staticmethod
    def _present(section: _Node, key: str) -> _Node | None:
        """The value of ``key``; None when absent or null (``key:`` with nothing after it)."""
        child = section.value.get(key) if isinstance(section.value, dict) else None
        return None if child is None or child.value is None else child

    def _expand(self, text: str, node: _Node, path: str) -> Any:
        """Replace ``${VAR}``, ``${VAR:-default}`` and ``$$`` in ``text``."""
        failed = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal failed
            if match.group(0) == "$$":
                return "$"
            inner = _ENV_INNER.fullmatch(match.group(1) or "")
            if match.group(1) is None or inner is None:
                self.problem(node.line, path, "invalid ${...} reference: use ${VAR}, "
                                              "${VAR:-default}, or $$ for a literal $")
                failed = True
                return ""
            name, default = inner.group(1), inner.group(2)
            value = self.environ.get(name)
            if value:
                return value
            if default is not None:
                return default
            if value is None:
                self.problem(node.line, path, f"environment variable {name} is not set "
                                              f"(use ${{{name}:-default}} for a default)")
                failed = True
                return ""
            return value

        result = _ENV_REF.sub(substitute, text)
        return _INVALID if failed else result

    def _scalar(self, node: _Node, path: str, kind: str) -> Any:
        """A scalar's value, strings expanded; _INVALID (reported) for a mapping or list."""
        if isinstance(node.value, str):
            return self._expand(node.value, node, path)
        if isinstance(node.value, dict | list):
            return self._expected(node, path, kind)
        return node.value

    def _expected(self, node: _Node, path: str, kind: str) -> Any:
        self.problem(node.line, path, _EXPECTED[kind])
        return _INVALID

    def _str(self, node: _Node, path: str) -> Any:
        value = self._scalar(node, path, "str")
        if value is _INVALID or isinstance(value, str):
            return value
        if node.text is not None:  # a YAML number, date or boolean: take it as written
            return node.text
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return self._expected(node, path, "str")

    def _int(self, node: _Node, path: str) -> Any:
        value = self._scalar(node, path, "int")
        if value is _INVALID:
            return _INVALID
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return self._expected(node, path, "int")

    def _url(self, node: _Node, path: str) -> Any:
        value = self._scalar(node, path, "url")
        if value is _INVALID:
            return _INVALID
        if not isinstance(value, str) or not _valid_url(value):
            return self._expected(node, path, "url")
        return value

    # Converters by option kind: (validator, node, option, path) -> value or _INVALID.

    def _convert_str(self, node: _Node, option: Option, path: str) -> Any:
        return self._str(node, path)

    def _convert_int(self, node: _Node, option: Option, path: str) -> Any:
        return self._int(node, path)

    def _convert_float(self, node: _Node, option: Option, path: str) -> Any:
        value = self._scalar(node, path, "float")
        if value is _INVALID:
            return _INVALID
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return self._expected(node, path, "float")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._expected(node, path, "float")
        if not math.isfinite(value):
            return self._expected(node, path, "float")
        return float(value)

    def _convert_bool(self, node: _Node, option: Option, path: str) -> Any:
        value = self._scalar(node, path, "bool")
        if value is _INVALID or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return self._expected(node, path, "bool")

    def _convert_duration(self, node: _Node, option: Option, path: str) -> Any:
        value = self._scalar(node, path, "duration")
        if value is _INVALID:
            return _INVALID
        try:
            return parse_duration(value)
        except ValueError:
            return self._expected(node, path, "duration")

    def _convert_int_list(self, node: _Node, option: Option, path: str) -> Any:
        if isinstance(node.value, str):  # e.g. "${PROFILES}" with PROFILES="123,456"
            text = self._expand(node.value, node, path)
            if text is _INVALID:
                return _INVALID
            parts = [part for part in re.split(r"[,\s]+", text) if part]
            if not all(re.fullmatch(r"[+-]?\d+", part) for part in parts):
                return self._expected(node, path, "int_list")
            return [int(part) for part in parts]
        if not isinstance(node.value, list):
            return self._expected(node, path, "int_list")
        items = [self._int(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return _INVALID if _INVALID in items else items

    def _convert_str_list(self, node: _Node, option: Option, path: str) -> Any:
        if not isinstance(node.value, list):
            return self._expected(node, path, "str_list")
        items = [self._str(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return _INVALID if _INVALID in items else items

    def _convert_url(self, node: _Node, option: Option, path: str) -> Any:
        return self._url(node, path)

    def _convert_path(self, node: _Node, option: Option, path: str) -> Any:
        return self._file_path(node, path)

    def _convert_regional_url(self, node: _Node, option: Option, path: str) -> Any:
        regions = self.regions
        if not isinstance(node.value, dict):
            url = self._url(node, path)
            return _INVALID if url is _INVALID else {region: url for region in regions or ("",)}
        if not regions:
            self.problem(node.line, path, "must be a URL (this channel has no regions)")
            return _INVALID
        urls = {}
        for region, child in node.value.items():
            if region not in regions:
                self.problem(node.key_lines[region], _join(path, region),
                             unknown_name("region", region, regions))
                urls[region] = _INVALID
            else:
                urls[region] = self._url(child, _join(path, region))
        defaults = option.default if isinstance(option.default, Mapping) else {}
        missing = [r for r in regions if r not in urls and r not in defaults]
        if missing:
            self.problem(node.line, path, f"has no URL for region {', '.join(missing)} "
                                          f"(give one for each of {', '.join(regions)})")
            return _INVALID
        if _INVALID in urls.values():
            return _INVALID
        return {region: urls.get(region, defaults.get(region)) for region in regions}

    def _convert_mapping(self, node: _Node, option: Option, path: str) -> Any:
        values = self._section(node, option.options or {}, path)
        if values is None or _INVALID in values.values():
            return _INVALID
        return values


_CONVERTERS = {
    "str": _Validator._convert_str,
    "int": _Validator._convert_int,
    "float": _Validator._convert_float,
    "bool": _Validator._convert_bool,
    "duration": _Validator._convert_duration,
    "int_list": _Validator._convert_int_list,
    "str_list": _Validator._convert_str_list,
    "url": _Validator._convert_url,
    "path": _Validator._convert_path,
    "regional_url": _Validator._convert_regional_url,
    "mapping": _Validator._convert_mapping,
}


def _rejected(exc: Exception) -> str:
    return f"{type(exc).__name__}: {redact(str(exc))}"


def _installed_inventory_types() -> Mapping[str, type[InventorySource]]:
    from agent.plugins import load_plugins

    return load_plugins().inventory_sources


def _builtin_source_types() -> Mapping[str, type[FreshnessSource]]:
    from agent.plugins import load_plugins

    return load_plugins(entry_points=False).freshness_sources


def _builtin_store_types() -> Mapping[str, type[SecretStore]]:
    from agent.plugins import load_plugins

    return load_plugins(entry_points=False).secret_stores


def _plain(node: _Node) -> Any:
    """A subtree as plain data, as written (no ``${VAR}`` expansion)."""
    if isinstance(node.value, dict):
        return {key: _plain(child) for key, child in node.value.items()}
    if isinstance(node.value, list):
        return [_plain(item) for item in node.value]
    return node.value


def _line_of(node: _Node, parts: list[str]) -> int | None:
    """The line of the deepest key of ``parts`` found under ``node``."""
    line = node.line
    for part in parts:
        if not isinstance(node.value, dict) or part not in node.value:
            break
        line = node.key_lines.get(part, line)
        node = node.value[part]
    return line


def _item_node(node: _Node, index: int) -> _Node:
    """The node of a list's item, or the list's own node for a comma-separated string."""
    return node.value[index] if isinstance(node.value, list) else node


def _agent_problems(values: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, message) for each agent setting that is well-formed but not acceptable."""

    def given(key: str) -> bool:
        return values[key] is not _INVALID

    if given("listen_address") and not _valid_listen_address(values["listen_address"]):
        yield "listen_address", "must be HOST:PORT like 127.0.0.1:9877, [::1]:9877 or :9877"
    if given("state_path") and not values["state_path"].strip():
        yield "state_path", "must be a file path (or :memory:)"
    if given("max_concurrency") and values["max_concurrency"] < 1:
        yield "max_concurrency", "must be at least 1"
    if given("shard"):
        try:
            parse_shard(values["shard"])
        except ValueError as exc:
            yield "shard", str(exc)
    interval, timeout = values["check_interval"], values["check_timeout"]
    if given("check_interval") and interval <= 0:
        yield "check_interval", "must be more than 0"
    if given("check_timeout") and timeout <= 0:
        yield "check_timeout", "must be more than 0"
    elif given("check_interval") and given("check_timeout") and 0 < interval <= timeout:
        yield "check_timeout", "must be less than agent.check_interval"


def _valid_url(text: str) -> bool:
    if any(c.isspace() for c in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _valid_listen_address(address: str) -> bool:
    """``host:port``, ``[::1]:port`` or ``:port`` (all interfaces); port 0 picks a free one."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return False
    if host.startswith("[") or host.endswith("]"):
        return host.startswith("[") and host.endswith("]") and len(host) > 2
    return ":" not in host and not any(c.isspace() for c in host)

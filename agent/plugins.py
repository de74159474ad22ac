"""Finding plugins: the pluggy manager and the registries it fills (channels, freshness
source types, inventory source types, secret store types)."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pluggy

from agent import __version__, hookspecs
from agent.channel import Channel
from agent.freshness.source import FreshnessSource
from agent.inventory.source import InventorySource
from agent.secrets.base import SecretStore

log = logging.getLogger(__name__)

# Built-in features are ordinary plugins, registered before the entry-point plugins.
DEFAULT_PLUGINS = (
    "agent.freshness.heartbeat",
    "agent.freshness.sql",
    "agent.freshness.file",
    "agent.inventory.sql",
    "agent.inventory.http",
    "agent.inventory.file",
    "agent.secrets.builtin",
)
BUILT_IN = f"channel-health-agent {__version__} (built-in)"


@dataclass
class PluginError:
    """A plugin that failed to load or to register; shown by ``channel-agent plugins``."""

    plugin: str
    error: str


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    channels: dict[str, type[Channel]] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    # channel name -> distribution (or module) that provided it
    origins: dict[str, str] = field(default_factory=dict)
    freshness_sources: dict[str, type[FreshnessSource]] = field(default_factory=dict)
    # source type -> distribution (or module) that provided it
    source_origins: dict[str, str] = field(default_factory=dict)
    inventory_sources: dict[str, type[InventorySource]] = field(default_factory=dict)
    inventory_origins: dict[str, str] = field(default_factory=dict)
    secret_stores: dict[str, type[SecretStore]] = field(default_factory=dict)
    store_origins: dict[str, str] = field(default_factory=dict)


def load_plugins(extra: Iterable[object] = (), entry_points: bool = True) -> Plugins:
    """Build a fresh plugin manager and collect every registered channel and source type.

    The built-in plugins (``DEFAULT_PLUGINS``) and ``extra`` plugins (modules or objects with
    hook implementations) are registered before the ``channel_agent`` entry points; tests
    pass their own and ``entry_points=False``. Import errors and failing hooks are recorded
    in ``errors`` and logged, never raised.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(manager=pm)

    origins: dict[int, str] = {}
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        origins[id(module)] = BUILT_IN
    for plugin in extra:
        pm.register(plugin)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            if pm.get_plugin(ep.name) is not None:
                continue
            origin = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.name
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not stop the others
                _record(plugins, origin, f"failed to load: {type(exc).__name__}: {exc}")
                continue
            origins[id(plugin)] = origin

    hooks: list[tuple[str, Callable[[type, str], None]]] = [
        ("register_channels", lambda cls, origin: _register(
            plugins, cls, origin, Channel, "name", "channel", plugins.channels, plugins.origins)),
        ("register_freshness_sources", lambda cls, origin: _register(
            plugins, cls, origin, FreshnessSource, "type", "freshness source type",
            plugins.freshness_sources, plugins.source_origins)),
        ("register_inventory_sources", lambda cls, origin: _register(
            plugins, cls, origin, InventorySource, "type", "inventory source type",
            plugins.inventory_sources, plugins.inventory_origins)),
        ("register_secret_stores", lambda cls, origin: _register(
            plugins, cls, origin, SecretStore, "type", "secret store type",
            plugins.secret_stores, plugins.store_origins)),
    ]
    for hook_name, add in hooks:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = origins.get(id(impl.plugin)) or pm.get_name(impl.plugin) or repr(impl.plugin)

            def register(cls: type, origin: str = origin, add=add) -> None:
                add(cls, origin)

            try:
                impl.function(register=register)
            except Exception as exc:
                _record(plugins, origin, f"{hook_name} failed: {type(exc).__name__}: {exc}")
    return plugins


def _register(plugins: Plugins, cls: type, origin: str, base: type, key: str, what: str,
              registry: dict[str, type], registry_origins: dict[str, str]) -> None:
    """Add ``cls`` to ``registry`` under ``cls.<key>``, or record why it is refused."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        _record(plugins, origin, f"registered {cls!r}, which is not a {base.__name__} subclass")
        return
    name = getattr(cls, key, None)
    if not isinstance(name, str) or not name.isidentifier():
        _record(plugins, origin, f"{what} class {cls.__name__} has no valid {key}")
        return
    if name in registry:
        _record(
            plugins,
            origin,
            f"{what} {name!r} is already registered by {registry_origins[name]}; ignored",
        )
        return
    if base is Channel:
        try:
            cls.reason_table()  # type: ignore[attr-defined]
        except ValueError as exc:
            _record(plugins, origin, f"{what} {name!r} declares a bad reason: {exc}; ignored")
            return
    registry[name] = cls
    registry_origins[name] = origin


def _record(plugins: Plugins, plugin: str, error: str) -> None:
    log.error("plugin %s: %s", plugin, error)
    plugins.errors.append(PluginError(plugin=plugin, error=error))

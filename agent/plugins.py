"""Finding channel plugins: the pluggy manager and the channel registry it fills."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pluggy

from agent import hookspecs
from agent.channel import Channel

log = logging.getLogger(__name__)


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


def load_plugins(extra: Iterable[object] = (), entry_points: bool = True) -> Plugins:
    """Build a fresh plugin manager and collect every registered channel.

    ``extra`` plugins (modules or objects with hook implementations) are registered before
    the ``channel_agent`` entry points; tests pass their own and ``entry_points=False``.
    Import errors and failing hooks are recorded in ``errors`` and logged, never raised.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(manager=pm)

    origins: dict[int, str] = {}
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

    for impl in pm.hook.register_channels.get_hookimpls():
        origin = origins.get(id(impl.plugin)) or pm.get_name(impl.plugin) or repr(impl.plugin)

        def register(cls: type, origin: str = origin) -> None:
            _register_channel(plugins, cls, origin)

        try:
            impl.function(register=register)
        except Exception as exc:
            _record(plugins, origin, f"register_channels failed: {type(exc).__name__}: {exc}")
    return plugins


def _register_channel(plugins: Plugins, cls: type, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        _record(plugins, origin, f"registered {cls!r}, which is not a Channel subclass")
        return
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        _record(plugins, origin, f"channel class {cls.__name__} has no valid name")
        return
    if name in plugins.channels:
        _record(
            plugins,
            origin,
            f"channel {name!r} is already registered by {plugins.origins[name]}; ignored",
        )
        return
    plugins.channels[name] = cls
    plugins.origins[name] = origin


def _record(plugins: Plugins, plugin: str, error: str) -> None:
    log.error("plugin %s: %s", plugin, error)
    plugins.errors.append(PluginError(plugin=plugin, error=error))

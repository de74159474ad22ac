"""The ``inventory_sources:`` section: named sources, each with a ``type`` whose ``Settings``
model validates the rest (agent.inventory.source.InventorySourceSettings and the type's own),
the channels it feeds checked against the configured ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.config.engine import join_key
from agent.config.modelbase import as_dict
from agent.config.problems import unknown_name
from agent.config.typed_sections import typed_entries
from agent.config.yamltree import Node, present
from agent.inventory.source import InventorySource
from agent.redact import redact

if TYPE_CHECKING:
    from agent.config.loader import _Loader


def inventory_sources(loader: _Loader, node: Node, configured_channels: set[str],
                      types: dict[str, type[InventorySource]],
                      ) -> tuple[dict[str, InventorySource], set[str]]:
    """The valid sources, and every channel a source (valid or not) names in ``channels``;
    every problem is recorded on ``loader``."""
    sources: dict[str, InventorySource] = {}
    fed: set[str] = set()
    for name, child, path, cls in typed_entries(node, "inventory_sources", "inventory source",
                                                types, loader.problem):
        channels = present(child, "channels")
        if channels is not None and isinstance(channels.value, list):
            fed.update(item.value for item in channels.value if isinstance(item.value, str))
        if cls is None:
            continue
        source = _source(loader, name, cls, child, path, configured_channels)
        if source is not None:
            sources[name] = source
    return sources, fed


def _source(loader: _Loader, name: str, cls: type[InventorySource], node: Node, path: str,
            configured_channels: set[str]) -> InventorySource | None:
    values = loader.scope.validate(cls.Settings, node, path, core=("type",))
    if values is None:
        return None
    unknown = [c for c in values.channels if c not in configured_channels]
    for channel in unknown:
        loader.problem(node.key_lines.get("channels", node.line), join_key(path, "channels"),
                       unknown_name("channel", channel, sorted(configured_channels))
                       + "; a fed channel needs its section under channels (its client etc.)")
    if unknown:
        return None
    settings = as_dict(values)
    settings["channels"] = tuple(settings["channels"])
    try:
        return cls(name=name, settings=settings)
    except Exception as exc:  # the type's own validation, or its bug
        loader.problem(node.line, path, f"the inventory source type rejected its settings: "
                                        f"{type(exc).__name__}: {redact(str(exc))}")
        return None

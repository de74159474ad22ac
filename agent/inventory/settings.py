"""The ``inventory_sources:`` section: named sources, each with a ``type`` and the settings
every source has (``interval``, ``timeout``, ``channels``, ``labels``, ``max_removal``,
``removal_hold``) plus its type's own ``options``.

Validated by the configuration loader's validator, like ``freshness_sources``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.channel import Option
from agent.inventory.source import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_REMOVAL,
    DEFAULT_REMOVAL_HOLD,
    DEFAULT_TIMEOUT,
    InventorySource,
)

if TYPE_CHECKING:
    from agent.config.loader import _Node, _Validator

CORE_OPTIONS: dict[str, Option] = {
    "interval": Option("duration", default=DEFAULT_INTERVAL, doc="how often to refresh"),
    "timeout": Option("duration", default=DEFAULT_TIMEOUT,
                      doc="how long one refresh may take; below interval"),
    "channels": Option("str_list", required=True, doc="the channels this source feeds"),
    "max_removal": Option("float", default=DEFAULT_MAX_REMOVAL,
                          doc="share of the source's accounts a refresh may remove at once "
                              "(0-1); more is held for removal_hold"),
    "removal_hold": Option("duration", default=DEFAULT_REMOVAL_HOLD,
                           doc="how long a list removing more than max_removal must be seen "
                               "before it applies"),
}


def inventory_sources(validator: _Validator, node: _Node, configured_channels: set[str],
                      types: dict[str, type[InventorySource]],
                      ) -> tuple[dict[str, InventorySource], set[str]]:
    """The valid sources, and every channel a source (valid or not) names in ``channels``;
    every problem is recorded on ``validator``."""
    from agent.config.loader import ACCOUNT_NAME, _join, unknown_name

    sources: dict[str, InventorySource] = {}
    fed: set[str] = set()
    if not isinstance(node.value, dict):
        validator.problem(node.line, "inventory_sources",
                          "must be a mapping of source name to settings")
        return sources, fed
    known = ", ".join(sorted(types)) or "none installed"
    for name, child in node.value.items():
        path = _join("inventory_sources", name)
        if not ACCOUNT_NAME.fullmatch(name):
            validator.problem(node.key_lines[name], path,
                              "the name must match [A-Za-z0-9_.-]+ (it becomes a label value)")
            continue
        if not isinstance(child.value, dict):
            validator.problem(child.line, path, f"must be a mapping with a type ({known})")
            continue
        channels = child.value.get("channels")
        if channels is not None and isinstance(channels.value, list):
            fed.update(item.value for item in channels.value if isinstance(item.value, str))
        type_node = validator._present(child, "type")
        if type_node is None:
            validator.problem(child.line, _join(path, "type"), f"is required: one of {known}")
            continue
        type_name = validator._str(type_node, _join(path, "type"))
        cls = types.get(type_name) if isinstance(type_name, str) else None
        if cls is None:
            if isinstance(type_name, str):
                validator.problem(type_node.line, _join(path, "type"),
                                  unknown_name("inventory source type", type_name, sorted(types)))
            continue
        source = _source(validator, name, cls, child, path, configured_channels)
        if source is not None:
            sources[name] = source
    return sources, fed


def _source(validator: _Validator, name: str, cls: type[InventorySource], node: _Node,
            path: str, configured_channels: set[str]) -> InventorySource | None:
    from agent.config.loader import _INVALID, _join, _rejected, unknown_name

    settings = validator._section(node, {**CORE_OPTIONS, **cls.options}, path,
                                  core=("type", "labels"))
    if settings is None:
        return None
    labels = validator._labels(node, path)

    def bad(key: str, message: str) -> None:
        validator.problem(node.key_lines.get(key, node.line), _join(path, key), message)
        settings[key] = _INVALID

    interval, timeout = settings["interval"], settings["timeout"]
    for key in ("interval", "timeout"):
        if settings[key] is not _INVALID and settings[key] <= 0:
            bad(key, "must be more than 0")
    if _INVALID not in (settings["interval"], settings["timeout"]) and timeout >= interval:
        bad("timeout", f"must be less than {path}.interval")
    share = settings["max_removal"]
    if share is not _INVALID and not 0 <= share <= 1:
        bad("max_removal", "must be a share between 0 and 1 (0.2 = 20%)")
    if settings["removal_hold"] is not _INVALID and settings["removal_hold"] < 0:
        bad("removal_hold", "must be 0 or more")
    channels = settings["channels"]
    if channels is not _INVALID:
        if not channels:
            bad("channels", "must name at least one channel")
        for channel in channels or ():
            if channel not in configured_channels:
                bad("channels", unknown_name("channel", channel, sorted(configured_channels))
                    + "; a fed channel needs its section under channels (its client etc.)")
    if _INVALID in settings.values() or labels is _INVALID:
        return None
    settings["labels"] = labels
    try:
        return cls(name=name, settings=_plain(settings))
    except Exception as exc:  # the type's own validation, or its bug
        validator.problem(node.line, path,
                          f"the inventory source type rejected its settings: {_rejected(exc)}")
        return None


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    settings["channels"] = tuple(dict.fromkeys(settings["channels"]))
    return settings

"""Sections of named things that each have a ``type``: ``freshness_sources``,
``inventory_sources``, ``secret_stores``. The checks every such entry needs before its type's
own ``Settings`` model validates the rest are made here, once, and worded the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from agent.config.engine import join_key
from agent.config.models import ACCOUNT_NAME
from agent.config.problems import unknown_name
from agent.config.yamltree import Node, present

T = TypeVar("T")


def typed_entries(node: Node, section: str, kind: str, types: Mapping[str, T],
                  problem: Callable[[int | None, str, str], None],
                  ) -> Iterator[tuple[str, Node, str, T | None]]:
    """(name, node, key path, class of its type) for each entry of ``section`` whose name
    can be a label value and whose value is a mapping; the class is None when the entry's
    ``type`` is missing or not one of ``types`` (``kind`` names them in the message, e.g.
    "freshness source"). Every problem goes to ``problem(line, key path, message)``."""
    noun = kind.split()[-1]
    if not isinstance(node.value, dict):
        problem(node.line, section, f"must be a mapping of {noun} name to settings")
        return
    known = ", ".join(sorted(types)) or "none installed"
    for name, child in node.value.items():
        path = join_key(section, name)
        if not ACCOUNT_NAME.fullmatch(str(name)):
            problem(node.key_lines.get(name), path,
                    "the name must match [A-Za-z0-9_.-]+ (it becomes a label value)")
            continue
        if not isinstance(child.value, dict):
            problem(child.line, path, f"must be a mapping with a type ({known})")
            continue
        type_node = present(child, "type")
        if type_node is None:
            problem(child.line, join_key(path, "type"), f"is required: one of {known}")
            yield name, child, path, None
            continue
        type_name = type_node.value if isinstance(type_node.value, str) else type_node.text
        cls = types.get(type_name or "")
        if cls is None:
            problem(type_node.line, join_key(path, "type"),
                    unknown_name(f"{kind} type", str(type_name), sorted(types)))
        yield name, child, path, cls

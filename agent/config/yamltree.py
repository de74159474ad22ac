"""Reading configuration YAML into a tree whose every value keeps its line number.

The file is read with ``yaml.compose`` (positions, no object construction); merge keys,
duplicate keys, alias cycles and alias bombs are handled here, so the models only ever see
plain data. Plain Python data (the demo's configuration) becomes the same tree, without lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.config.modelbase import join
from agent.config.problems import ConfigError, ConfigProblem, ProblemList
from agent.config.yamlerrors import yaml_syntax_problem

# libyaml's parser when PyYAML has it: 10,000 accounts parse in a fraction of the time
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# How many values a YAML file may expand to: plenty for anchors merged into every account.
MIN_NODE_BUDGET = 10_000
NODES_PER_CHAR = 10
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class Node:
    """A configuration value with its line: a dict or list of Node, or a scalar."""

    value: Any
    line: int | None
    text: str | None = None  # a YAML scalar as written, for str fields given e.g. a number
    key_lines: dict[str, int | None] = field(default_factory=dict)  # mapping key -> its line


INVALID = object()  # a value that was reported as a problem


class _TooLarge(Exception):
    """The YAML tree grew past the node budget."""


def read_yaml(text: str, problems: ProblemList) -> Node:
    """The tree of ``text``; a syntax error, an alias bomb or too deep nesting is a ConfigError."""
    # Aliases may repeat a subtree any number of times ("billion laughs"); bounding the values
    # built by the input's size keeps validation linear in it.
    budget = MIN_NODE_BUDGET + NODES_PER_CHAR * len(text)
    builder = _Builder(problems, budget)
    try:
        root = _compose(text)
        return Node({}, None) if root is None else builder.from_yaml(root, "")
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_syntax_problem(problems.source, exc, text)]) from None
    except RecursionError:
        problem = "values are nested too deeply to be a configuration"
        raise ConfigError([ConfigProblem(problems.source, None, "", problem)]) from None
    except _TooLarge:
        problem = ("the file expands to too many values through YAML aliases "
                   f"(more than {budget}); refusing to read it")
        raise ConfigError([ConfigProblem(problems.source, None, "", problem)]) from None


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
        # Python's parser again, for its wording and positions of the problem (and its own
        # depth limit): errors read the same whichever parser PyYAML was built with.
        return yaml.compose(text, Loader=yaml.SafeLoader)


class _Builder:
    def __init__(self, problems: ProblemList, budget: int) -> None:
        self.problems = problems
        self.budget = budget  # values from_yaml may still build
        self._constructor = yaml.constructor.SafeConstructor()
        self._building: set[int] = set()  # YAML nodes being converted, to stop alias cycles

    def from_yaml(self, node: yaml.Node, path: str) -> Node:
        line = node.start_mark.line + 1
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge
        if id(node) in self._building:
            self.problems.add(line, path, "refers to itself through a YAML alias")
            return Node(INVALID, line)
        self._building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                items = [self.from_yaml(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
                return Node(items, line)
            return self._scalar(node, path)
        finally:
            self._building.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str) -> Node:
        result = Node({}, node.start_mark.line + 1)
        merges = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.add(key_line, path, "mapping keys must be plain strings")
                continue
            key = key_node.value
            if key in result.value:
                first = result.key_lines[key]
                self.problems.add(key_line, join(path, key),
                                  f"duplicate key (first at line {first})")
                continue
            child = self.from_yaml(value_node, join(path, key))
            if isinstance(child.value, dict):
                # a key missing from a block mapping is best shown at its parent key's line
                child.line = key_line
            result.value[key] = child
            result.key_lines[key] = key_line
        for merge in merges:
            self._merge(result, merge, path)
        return result

    def _merge(self, target: Node, merge: yaml.Node, path: str) -> None:
        """YAML merge keys (``<<: *defaults``): keys given explicitly win."""
        sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
        for source in sources:
            merged = self.from_yaml(source, path)
            if not isinstance(merged.value, dict):
                self.problems.add(merged.line, path, "'<<' must merge a mapping")
                continue
            for key, child in merged.value.items():
                if key not in target.value:
                    target.value[key] = child
                    target.key_lines[key] = merged.key_lines[key]

    def _scalar(self, node: yaml.Node, path: str) -> Node:
        line = node.start_mark.line + 1
        if node.tag == _STR_TAG:  # what the constructor would return, without its overhead
            return Node(node.value, line, text=node.value)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError):
            self.problems.add(line, path, f"cannot read this value with YAML tag {node.tag}")
            return Node(INVALID, line)
        return Node(value, line, text=node.value)


def from_python(data: Any, problems: ProblemList, path: str = "") -> Node:
    """The tree of plain Python data (as YAML would load it); no lines."""
    if isinstance(data, Mapping):
        result = Node({}, None)
        for key, value in data.items():
            if not isinstance(key, str):
                problems.add(None, path, "mapping keys must be strings")
                continue
            result.value[key] = from_python(value, problems, join(path, key))
            result.key_lines[key] = None
        return result
    if isinstance(data, list | tuple):
        return Node([from_python(item, problems, f"{path}[{i}]") for i, item in enumerate(data)],
                    None)
    if isinstance(data, Path):
        return Node(str(data), None)
    return Node(data, None)


def present(section: Node, key: str) -> Node | None:
    """The value of ``key``; None when absent or null (``key:`` with nothing after it)."""
    child = section.value.get(key) if isinstance(section.value, dict) else None
    return None if child is None or child.value is None else child


_ENV_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def env_variable_at(config_file: str, key_path: str) -> str | None:
    """The environment variable the value at ``key_path`` of a configuration file comes from
    (its first ``${VAR}``), if any: where a reconnect tells the user to put a new token."""
    try:
        node: Any = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", key_path):
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError):
        return None
    match = _ENV_NAME.search(node) if isinstance(node, str) else None
    return match.group(1) if match else None

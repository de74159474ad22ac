"""The ``freshness_sources`` section and the ``datasets`` of channels and accounts: the
part of the configuration loader (:mod:`agent.config.loader`) that builds freshness sources
and the data sets they watch."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agent.channel import Account
from agent.config.engine import Scope, join_key
from agent.config.modelbase import as_dict
from agent.config.models import ACCOUNT_NAME, DatasetEntry
from agent.config.problems import rejected, unknown_name
from agent.config.typed_sections import typed_entries
from agent.config.yamltree import Node, present
from agent.freshness.source import Dataset, FreshnessSource


class FreshnessSections:
    """Mixed into the loader: reads ``freshness_sources`` into ``freshness`` and each
    account's data sets into ``datasets``, reporting problems through ``problem``."""

    scope: Scope
    source_types: Mapping[str, type[FreshnessSource]]
    freshness: dict[str, FreshnessSource | None]  # None: reported as a problem
    datasets: list[Dataset]
    problem: Callable[[int | None, str, str], None]  # line, key path, message

    def _freshness_sources(self, root: Node) -> None:
        """Validate ``freshness_sources`` and build each source into ``self.freshness``."""
        node = present(root, "freshness_sources")
        if node is None:
            return
        if isinstance(node.value, dict):  # None until built: a problem is reported otherwise
            self.freshness.update(dict.fromkeys(node.value))
        for name, child, path, cls in typed_entries(node, "freshness_sources",
                                                    "freshness source", self.source_types,
                                                    self.problem):
            if cls is not None:
                self.freshness[name] = self._freshness_source(name, cls, child, path)

    def _freshness_source(self, name: str, cls: type[FreshnessSource], node: Node,
                          path: str) -> FreshnessSource | None:
        values = self.scope.validate(cls.Settings, node, path, core=("type",))
        if values is None:
            return None
        try:
            return cls(name=name, settings=as_dict(values))
        except Exception as exc:  # the type's own validation, or its bug
            self.problem(node.line, path,
                         f"the freshness source type rejected its settings: {rejected(exc)}")
            return None

    def _dataset_entries(self, node: Node, path: str) -> dict[str, tuple[dict, str, Node]]:
        """The ``datasets`` of a channel or account: name -> (given values, path, node)."""
        path = join_key(path, "datasets")
        datasets = present(node, "datasets")
        if datasets is None or not isinstance(node.value, dict):
            return {}
        if not isinstance(datasets.value, dict):
            self.problem(datasets.line, path,
                         "must be a mapping of data set name to {source, max_age}")
            return {}
        entries = {}
        for name, entry in datasets.value.items():
            entry_path = join_key(path, name)
            if not ACCOUNT_NAME.fullmatch(name):
                self.problem(datasets.key_lines[name], entry_path,
                             "the name must match [A-Za-z0-9_.-]+ (it becomes a label value)")
                continue
            if entry.value is None:
                entry = Node({}, datasets.key_lines[name])
            values = self.scope.validate(DatasetEntry, entry, entry_path)
            if values is None:
                entries[name] = ({"source": None, "max_age": None, "invalid": True}, entry_path,
                                 entry)
                continue
            given = as_dict(values)
            source = given["source"]
            if source is not None and source not in self.freshness:
                self.problem(entry.key_lines.get("source"), join_key(entry_path, "source"),
                             unknown_name("freshness source", source, sorted(self.freshness)))
                given["invalid"] = True
            entries[name] = (given, entry_path, entry)
        return entries

    def _account_datasets(self, account: Account, defaults: dict, own: dict) -> None:
        """The account's data sets: the channel's ``datasets``, overridden key by key."""
        for name in [*defaults, *(n for n in own if n not in defaults)]:
            default_values, default_path, default_node = defaults.get(name, ({}, None, None))
            values, where_path, where_node = own.get(name, (default_values, default_path,
                                                            default_node))
            if default_values.get("invalid") or values.get("invalid"):
                continue  # reported already
            merged = {k: v for k, v in default_values.items() if v is not None}
            merged.update({k: v for k, v in values.items() if v is not None})
            missing = [key for key in ("source", "max_age") if key not in merged]
            for key in missing:
                also = f" (here or in {default_path})" if default_path and name in own else ""
                self.problem(where_node.line, join_key(where_path, key), f"is required{also}")
            if not missing:
                self.datasets.append(Dataset(
                    channel=account.channel, account=account.name, region=account.region,
                    name=name, source=merged["source"], max_age=merged["max_age"]))

"""The ``secret_stores:`` section and credential references in the configuration tree.

Each store type validates its section with its ``Settings`` model through the configuration
engine (file, line and key path in every problem; never the value given: after ``${VAR}``
expansion it may be a secret).

A credential reference is ``{store: NAME, key: KEY}`` (optionally ``mode: owner|observer``)
or the short string ``NAME:KEY``, where NAME is a configured store.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from functools import cache
from typing import Any, get_args

from agent.channel import Channel, MissingSecret, SecretRef
from agent.config.engine import Scope
from agent.config.problems import ProblemList
from agent.config.typed_sections import typed_entries
from agent.config.types import SecretReference, metadata_of
from agent.config.yamltree import Node
from agent.redact import redact
from agent.secrets.base import KEY_PATTERN, OBSERVER, OWNER, SecretStore, StoreSetupError
from agent.secrets.registry import SecretStores

SHORT_REFERENCE = re.compile(r"([A-Za-z0-9_.-]+):(\S+)")
REFERENCE_KEYS = ("store", "key", "mode")



def build_stores(scope: Scope, node: Node, types: Mapping[str, type[SecretStore]]
                 ) -> tuple[dict[str, SecretStore], frozenset[str]]:
    """Every store of a ``secret_stores`` section that validates (each type's ``Settings``
    model, problems to ``scope``), and the name of every store configured, built or not."""
    stores: dict[str, SecretStore] = {}
    for name, child, where, cls in typed_entries(node, "secret_stores", "secret store", types,
                                                 scope.problems.add):
        if cls is None:
            continue
        settings = scope.validate(cls.Settings, child, where, core=("type",))
        if settings is None:
            continue
        try:
            stores[name] = cls(name, settings, base_dir=scope.base_dir)
        except (StoreSetupError, ValueError, MissingSecret) as exc:
            scope.problems.add(node.key_lines.get(name), where, redact(str(exc)))
    return stores, frozenset(node.value) if isinstance(node.value, dict) else frozenset()


def parse_reference(value: Any, stores: Collection[str]
                    ) -> tuple[str, str, str | None] | str | None:
    """(store, key, mode) for a reference to one of ``stores`` (names); a message (str) for a
    malformed one; None when ``value`` is not a reference at all (a plain inline secret)."""
    if isinstance(value, str):
        match = SHORT_REFERENCE.fullmatch(value.strip())
        if match is None or match.group(1) not in stores:
            return None
        value = {"store": match.group(1), "key": match.group(2)}
    if not isinstance(value, Mapping):
        return None
    unknown = sorted(set(value) - set(REFERENCE_KEYS))
    if unknown:
        return f"unknown key '{unknown[0]}' in a secret reference (expected store, key, mode)"
    store, key, mode = value.get("store"), value.get("key", ""), value.get("mode")
    if not isinstance(store, str) or store not in stores:
        names = ", ".join(sorted(stores)) or "none configured under secret_stores"
        return f"store must name a secret store (known: {names})"
    if not isinstance(key, str) or (key and not KEY_PATTERN.fullmatch(key)):
        return "key must be a string of letters, digits and _.:@/+=,- (up to 512)"
    if mode not in (None, OWNER, OBSERVER):
        return f"mode must be {OWNER} or {OBSERVER}"
    return store, key, mode


# --- references in a configuration tree (agent.config.loader) ------------------------------

@cache
def reference_fields(channel: type[Channel]) -> tuple[str, ...]:
    """The account settings of ``channel`` declared as
    :data:`agent.config.types.SecretReference` (read at use): those may name a store."""
    marker = get_args(SecretReference)[1]  # its BeforeValidator
    return tuple(name for name, field in channel.AccountSettings.model_fields.items()
                 if any(item is marker for item in metadata_of(field)))


def resolve_references(node: Node, channel: type[Channel], stores: SecretStores,
                       declared: Collection[str], path: str, problems: ProblemList) -> Node:
    """``node`` (an account) with each store reference among its credential settings
    replaced by the :class:`SecretRef` it names, which the account model takes as it is.

    The value is looked at as written, before ``${VAR}`` expansion, so a token from the
    environment is never taken for a reference. ``declared``: every store name under
    ``secret_stores``, also those that failed to build (their problems are reported already)."""
    if not isinstance(node.value, dict):
        return node
    name = node.value.get("name")
    account = name.value if name is not None and isinstance(name.value, str) else ""
    replaced: dict[str, Node] = {}
    for field_name in reference_fields(channel):
        child = node.value.get(field_name)
        if child is None or child.value is None:
            continue
        parsed = parse_reference(_as_written(child), declared)
        if parsed is None:
            continue
        where = f"{path}.{field_name}" if path else field_name
        placeholder = Node(SecretRef(source=where), child.line)  # for a reported problem
        replaced[field_name] = placeholder
        if isinstance(parsed, str):
            problems.add(child.line, where, parsed)
            continue
        store, key, mode = parsed
        if store not in stores.stores:
            continue
        try:
            located = stores.stores[store].locate(key, channel.name, account)
        except ValueError as exc:
            problems.add(child.line, f"{where}.key", f"secret store {store}: {exc}")
            continue
        replaced[field_name] = Node(stores.ref(store, located, source=where, mode=mode),
                                    child.line)
    if not replaced:
        return node
    return Node({**node.value, **replaced}, node.line, node.text, node.key_lines)


def _as_written(node: Node) -> Any:
    if isinstance(node.value, dict):
        return {key: _as_written(child) for key, child in node.value.items()}
    if isinstance(node.value, list):
        return [_as_written(item) for item in node.value]
    return node.value



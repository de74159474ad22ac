"""The ``secret_stores:`` section and credential references, as plain data in, stores out.

Each store type validates its section with its pydantic ``Settings`` model; problems come back
as (path, message) pairs for the configuration loader, which adds file and line. Messages say
what is expected, never the value given (after ``${VAR}`` expansion it may be a secret).

A credential reference is ``{store: NAME, key: KEY}`` (optionally ``mode: owner|observer``)
or the short string ``NAME:KEY``, where NAME is a configured store.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.channel import MissingSecret
from agent.secrets.base import KEY_PATTERN, OBSERVER, OWNER, SecretStore, StoreSetupError

NAME = re.compile(r"[A-Za-z0-9_.-]+")
SHORT_REFERENCE = re.compile(r"([A-Za-z0-9_.-]+):(\S+)")
REFERENCE_KEYS = ("store", "key", "mode")

Problem = tuple[str, str]  # (dotted path, message)


def build_stores(section: Any, types: Mapping[str, type[SecretStore]],
                 base_dir: Path) -> tuple[dict[str, SecretStore], list[Problem]]:
    """Every store of a ``secret_stores`` section that validates, and every problem."""
    if not isinstance(section, Mapping):
        return {}, [("secret_stores", "must be a mapping of store name to settings")]
    stores: dict[str, SecretStore] = {}
    problems: list[Problem] = []
    known = ", ".join(sorted(types)) or "none installed"
    for name, data in section.items():
        path = f"secret_stores.{name}"
        if not NAME.fullmatch(name):
            problems.append((path, "the name must match [A-Za-z0-9_.-]+ (it becomes a label "
                                   "value)"))
            continue
        if not isinstance(data, Mapping) or not isinstance(data.get("type"), str):
            problems.append((f"{path}.type", f"is required: one of {known}"))
            continue
        cls = types.get(data["type"])
        if cls is None:
            problems.append((f"{path}.type", f"unknown secret store type '{data['type']}' "
                                             f"(expected one of: {known})"))
            continue
        try:
            settings = cls.Settings.model_validate(dict(data))
        except ValidationError as exc:
            problems += [(_join(path, error["loc"]), _message(error, cls))
                         for error in exc.errors()]
            continue
        try:
            stores[name] = cls(name, settings, base_dir=base_dir)
        except (StoreSetupError, ValueError, MissingSecret) as exc:
            problems.append((path, str(exc)))
    return stores, problems


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


def _join(path: str, loc: tuple[Any, ...]) -> str:
    return ".".join([path, *(str(part) for part in loc)]) if loc else path


def _message(error: Mapping[str, Any], cls: type[SecretStore]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        accepted = ", ".join(sorted(cls.Settings.model_fields))
        return f"unknown key (accepted: {accepted})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")

"""Where a discovered account's credential comes from: the one place a row's credential
columns become a :class:`~agent.channel.SecretRef` (or a :class:`~agent.channel.Secret`).

For each secret account setting of the channel (``refresh_token`` for Amazon Ads) a row
gives one of:

- ``<name>``: the token itself, for platforms that keep tokens in their own database. It is
  held in memory only: the state file keeps the row with ``<name>#withheld`` (a fingerprint)
  instead, and an account restored from there while its source is down keeps its state and
  series but is not checked until the source answers again (:attr:`SecretRef.withheld`).
- ``<name>_file``: a file path (relative paths resolve against the configuration's
  directory), read at check time like the configuration file's ``<name>_file``.
- ``<name>_ref``: a reference into one of the configuration's ``secret_stores``: ``NAME:KEY``
  or an object ``{"store": NAME, "key": KEY, "mode": "observer"}`` (a JSON text in a SQL
  column). It names where the token is, never the token, so the state file keeps it and an
  account restored while its source is down is checked as usual.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.channel import Channel, Secret, SecretRef
from agent.secrets.config import parse_reference
from agent.secrets.registry import SecretStores

SECRET_KINDS = ("secret", "secret_ref")
WITHHELD_SUFFIX = "#withheld"
REF_SUFFIX = "_ref"


def secret_columns(channel_cls: type[Channel]) -> tuple[str, ...]:
    """The account settings of ``channel_cls`` that hold a secret."""
    return tuple(name for name, option in channel_cls.account_options.items()
                 if option.kind in SECRET_KINDS)


def row_credentials(channel_cls: type[Channel], data: dict[str, Any], base_dir: Path,
                    stores: SecretStores | None = None) -> tuple[dict[str, Any], list[str]]:
    """The row's secret settings (setting name -> SecretRef or Secret) and the problems with
    them (naming the column, never the value)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name in secret_columns(channel_cls):
        option = channel_cls.account_options[name]
        inline, file, withheld, ref = (data.get(name), data.get(f"{name}_file"),
                                       data.get(name + WITHHELD_SUFFIX),
                                       data.get(name + REF_SUFFIX))
        where = f"inventory column {name}"
        given = [column for column, value in ((name, inline), (f"{name}_file", file),
                                              (name + REF_SUFFIX, ref)) if value is not None]
        if len(given) > 1:
            problems.append(f"{given[-1]}: give one of {name}, {name}_file and "
                            f"{name}{REF_SUFFIX}, not several")
        elif ref is not None:
            reference = _store_reference(ref, option.kind, name, data, stores)
            if isinstance(reference, str):
                problems.append(reference)
            else:
                values[name] = reference
        elif inline is not None:
            if not isinstance(inline, str) or not inline.strip():
                problems.append(f"{name}: must be a non-empty string")
                continue
            secret = Secret(inline.strip())
            values[name] = secret if option.kind == "secret" else SecretRef(value=secret,
                                                                            source=where)
        elif file is not None:
            if not isinstance(file, str) or not file.strip():
                problems.append(f"{name}_file: must be a file path")
                continue
            path = Path(file.strip()).expanduser()
            path = path if path.is_absolute() else base_dir / path
            ref = SecretRef(path=path, source=f"inventory column {name}_file")
            if option.kind == "secret":
                problems.append(f"{name}_file: this setting is read once; give {name}")
                continue
            values[name] = ref
        elif withheld is not None and option.kind == "secret_ref":
            values[name] = SecretRef(source=f"{where} (not kept across restarts: "
                                            f"waiting for the source)")
        elif option.required:
            problems.append(f"{name}: is required: a {name}, {name}_file or {name}{REF_SUFFIX} "
                            f"column")
    return values, problems


def _store_reference(value: Any, kind: str, name: str, data: dict[str, Any],
                     stores: SecretStores | None) -> SecretRef | str:
    """The SecretRef of a ``<name>_ref`` column, or the problem with it."""
    column = name + REF_SUFFIX
    if kind != "secret_ref":
        return f"{column}: this setting is read once; give {name}"
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return f"{column}: is not a JSON object nor NAME:KEY"
    known = stores.stores if stores is not None else {}
    parsed = parse_reference(value, known)
    if parsed is None:
        configured = ", ".join(sorted(known)) or "none configured under secret_stores"
        return f"{column}: must be STORE:KEY or {{store, key}} naming a secret store " \
               f"(known: {configured})"
    if isinstance(parsed, str):
        return f"{column}: {parsed}"
    assert stores is not None
    store, key, mode = parsed
    try:
        located = known[store].locate(key, str(data.get("channel")), str(data.get("account")))
    except ValueError as exc:
        return f"{column}: secret store {store}: {exc}"
    return stores.ref(store, located, source=f"inventory column {column}", mode=mode)


def describe_credential(channel_cls: type[Channel], settings: dict[str, Any]) -> str:
    """Where an account's credential is, never what it is: "file PATH", "from the source"
    (the token itself came in the row), "withheld" (restored; waits for the source)."""
    places = []
    for name in secret_columns(channel_cls):
        value = settings.get(name)
        if isinstance(value, SecretRef):
            if value.store is not None:
                places.append(f"{name}: secret store {value.store}, key {value.key}")
            elif value.path is not None:
                places.append(f"{name}: file {value.path}")
            elif value.withheld:
                places.append(f"{name}: withheld until the source answers")
            else:
                places.append(f"{name}: from the source")
        elif isinstance(value, Secret):
            places.append(f"{name}: from the source")
    return "; ".join(places) or "-"

"""Where a discovered account's credential comes from: the one place that decides what a
row's credential columns give the account model (which makes the SecretRef, as for the
configuration file's accounts).

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

import functools
import json
from typing import Any

from agent.channel import Channel, Secret, SecretRef
from agent.config.modelbase import secret_field
from agent.secrets.config import parse_reference
from agent.secrets.registry import SecretStores

WITHHELD_SUFFIX = "#withheld"
REF_SUFFIX = "_ref"


@functools.cache
def secret_columns(channel_cls: type[Channel]) -> tuple[str, ...]:
    """The account settings of ``channel_cls`` that hold a secret."""
    return tuple(name for name, field in channel_cls.AccountSettings.model_fields.items()
                 if secret_field(field))


@functools.cache
def credential_columns(channel_cls: type[Channel]) -> frozenset[str]:
    """Every column a row may give a credential in (left out of the ordinary settings)."""
    return frozenset(column for name in secret_columns(channel_cls)
                     for column in (name, f"{name}_file", name + REF_SUFFIX,
                                    name + WITHHELD_SUFFIX))


def row_credentials(channel_cls: type[Channel], data: dict[str, Any]) -> dict[str, Any]:
    """What the row gives the account model for each secret setting: the token itself, a
    ``<name>_file`` path, or (restored from the state file, the token withheld) a SecretRef
    with neither, which the model takes as it is."""
    given: dict[str, Any] = {}
    for name in secret_columns(channel_cls):
        for column in (name, f"{name}_file"):
            if data.get(column) is not None:
                given[column] = data[column]
        if not given.keys() & {name, f"{name}_file"} and \
                data.get(name + WITHHELD_SUFFIX) is not None:
            given[name] = withheld_ref(name)
    return given


def withheld_ref(name: str) -> SecretRef:
    """The credential of secret setting ``name`` of an account restored from the state
    file whose row carried the token itself: neither value nor file, until the source
    answers again."""
    # the source interned by SecretRef: one string for every account
    return SecretRef(source=f"inventory column {name} (not kept across restarts: waiting "
                            f"for the source)")


def store_references(channel_cls: type[Channel], data: dict[str, Any],
                     stores: SecretStores | None) -> tuple[dict[str, SecretRef], list[str]]:
    """The ``<name>_ref`` columns of a row as store references (setting name -> SecretRef),
    and the problems with them (naming the column, never a value)."""
    refs: dict[str, SecretRef] = {}
    problems: list[str] = []
    for name in secret_columns(channel_cls):
        value = data.get(name + REF_SUFFIX)
        if value is None:
            continue
        if data.get(name) is not None or data.get(f"{name}_file") is not None:
            problems.append(f"{name}{REF_SUFFIX}: give one of {name}, {name}_file and "
                            f"{name}{REF_SUFFIX}, not several")
            continue
        reference = _store_reference(value, name, data, stores)
        if isinstance(reference, str):
            problems.append(reference)
        else:
            refs[name] = reference
    return refs, problems


def _store_reference(value: Any, name: str, data: dict[str, Any],
                     stores: SecretStores | None) -> SecretRef | str:
    """The SecretRef of a ``<name>_ref`` column, or the problem with it."""
    column = name + REF_SUFFIX
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

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

Secret stores (issue 14) add their references here: a resolved :class:`SecretRef` is taken
by the model as it is.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from agent.channel import Channel, Secret, SecretRef
from agent.config.modelbase import secret_field

WITHHELD_SUFFIX = "#withheld"


@functools.cache
def secret_columns(channel_cls: type[Channel]) -> tuple[str, ...]:
    """The account settings of ``channel_cls`` that hold a secret."""
    return tuple(name for name, field in channel_cls.AccountSettings.model_fields.items()
                 if secret_field(field))


def credential_columns(channel_cls: type[Channel]) -> frozenset[str]:
    """Every column a row may give a credential in (left out of the ordinary settings)."""
    return frozenset(column for name in secret_columns(channel_cls)
                     for column in (name, f"{name}_file", name + WITHHELD_SUFFIX))


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
            where = sys.intern(f"inventory column {name}")  # one string for every account
            given[name] = SecretRef(source=f"{where} (not kept across restarts: waiting for "
                                           f"the source)")
    return given


def describe_credential(channel_cls: type[Channel], settings: dict[str, Any]) -> str:
    """Where an account's credential is, never what it is: "file PATH", "from the source"
    (the token itself came in the row), "withheld" (restored; waits for the source)."""
    places = []
    for name in secret_columns(channel_cls):
        value = settings.get(name)
        if isinstance(value, SecretRef):
            if value.path is not None:
                places.append(f"{name}: file {value.path}")
            elif value.withheld:
                places.append(f"{name}: withheld until the source answers")
            else:
                places.append(f"{name}: from the source")
        elif isinstance(value, Secret):
            places.append(f"{name}: from the source")
    return "; ".join(places) or "-"

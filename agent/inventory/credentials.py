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

Secret stores (issue 14) add their references here.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from agent.channel import Channel, Secret, SecretRef

SECRET_KINDS = ("secret", "secret_ref")
WITHHELD_SUFFIX = "#withheld"


@functools.cache
def secret_columns(channel_cls: type[Channel]) -> tuple[str, ...]:
    """The account settings of ``channel_cls`` that hold a secret."""
    return tuple(name for name, option in channel_cls.account_options.items()
                 if option.kind in SECRET_KINDS)


def row_credentials(channel_cls: type[Channel], data: dict[str, Any],
                    base_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The row's secret settings (setting name -> SecretRef or Secret) and the problems with
    them (naming the column, never the value)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name in secret_columns(channel_cls):
        option = channel_cls.account_options[name]
        inline, file, withheld = (data.get(name), data.get(f"{name}_file"),
                                  data.get(name + WITHHELD_SUFFIX))
        where = sys.intern(f"inventory column {name}")  # one string for every account
        if inline is not None and file is not None:
            problems.append(f"{name}_file: give either {name} or {name}_file, not both")
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
            ref = SecretRef(path=path, source=sys.intern(f"{where}_file"))
            if option.kind == "secret":
                problems.append(f"{name}_file: this setting is read once; give {name}")
                continue
            values[name] = ref
        elif withheld is not None and option.kind == "secret_ref":
            values[name] = SecretRef(source=f"{where} (not kept across restarts: "
                                            f"waiting for the source)")
        elif option.required:
            problems.append(f"{name}: is required: a {name} or {name}_file column")
    return values, problems


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

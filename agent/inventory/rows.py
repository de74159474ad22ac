"""Inventory rows: from what a source returned to an :class:`~agent.channel.Account`.

A row is first *normalised* (:func:`normalise`): plain JSON values, SQL ``NULL`` dropped,
``label_<name>`` columns folded into ``labels``, and a canonical text of it that holds a
fingerprint instead of any token. That text is what the diff compares and what the state
file keeps, so an unchanged row costs one string comparison and no token is ever stored.
Only rows that are new or changed are then *validated* (:func:`validate_row`) with the same
rules and messages as the configuration file's accounts.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.channel import Account, Channel
from agent.inventory.credentials import (
    REF_SUFFIX,
    WITHHELD_SUFFIX,
    row_credentials,
    secret_columns,
)
from agent.inventory.labels import label_problems
from agent.secrets.registry import SecretStores

LABEL_PREFIX = "label_"
LIST_KINDS = ("int_list", "str_list")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that was skipped: which source, which row (1-based), which account if known.
    ``message`` says what is wrong, never what the value was."""

    source: str
    row: int | None
    account: str  # "channel/account", or "" when the row has none
    message: str

    def __str__(self) -> str:
        where = f"inventory source {self.source}"
        if self.row is not None:
            where += f", row {self.row}"
        if self.account:
            where += f" ({self.account})"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A normalised row: its account key, position, values (tokens included) and canonical
    text (tokens replaced by fingerprints)."""

    key: tuple[str, str]
    row: int
    data: dict[str, Any]
    text: str


class RowInvalid(Exception):
    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def normalise(source: str, row: int, raw: Any,
              channels: Mapping[str, type[Channel]]) -> Candidate | RowProblem:
    """``raw`` (a mapping from the source) as a :class:`Candidate`, or why it is unusable.
    ``channels`` are the classes of the channels the source feeds."""
    if not isinstance(raw, Mapping):
        return RowProblem(source, row, "", "must be an object with channel and account")
    data: dict[str, Any] = {}
    labels: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            return RowProblem(source, row, "", "column names must be strings")
        if value is None:
            continue
        value = _plain(value)
        if key.startswith(LABEL_PREFIX):
            labels[key[len(LABEL_PREFIX):]] = value
        elif key == "labels" and isinstance(value, dict):
            labels.update({k: v for k, v in value.items() if v is not None})
        else:
            data[key] = value
    if labels:
        data["labels"] = labels
    channel, account = data.get("channel"), data.get("account")
    missing = [name for name, value in (("channel", channel), ("account", account))
               if not isinstance(value, str) or not value]
    if missing:
        return RowProblem(source, row, "", f"{' and '.join(missing)} must be non-empty "
                                           f"strings")
    assert isinstance(channel, str) and isinstance(account, str)
    cls = channels.get(channel)
    if cls is None:
        fed = ", ".join(sorted(channels))
        return RowProblem(source, row, f"{channel}/{account}",
                          f"channel {channel!r} is not fed by this source (it feeds {fed})")
    public = dict(data)
    for column in secret_columns(cls):
        value = public.pop(column, None)
        if value is not None:
            public[column + WITHHELD_SUFFIX] = _fingerprint(value)
    text = json.dumps(public, sort_keys=True, separators=(",", ":"), default=str)
    return Candidate((channel, account), row, data, text)


def restored(source: str, row: int, text: str) -> Candidate | RowProblem:
    """A row as the state file kept it (tokens withheld)."""
    try:
        data = json.loads(text)
        key = (data["channel"], data["account"])
    except (ValueError, KeyError, TypeError):
        return RowProblem(source, row, "", "the saved row is unreadable")
    return Candidate(key, row, data, text)


def validate_row(candidate: Candidate, *, source: str, channel_cls: type[Channel],
                 static_labels: Mapping[str, str], base_dir: Path,
                 stores: SecretStores | None = None) -> Account:
    """The account a row describes, validated like the configuration file's accounts (same
    rules, same messages); :class:`RowInvalid` with every problem otherwise.

    The one place rows meet the configuration validator (issue 12 replaces it with the
    account model)."""
    from agent.config.loader import _Validator

    data = candidate.data
    channel, name = candidate.key
    credentials, problems = row_credentials(channel_cls, data, base_dir, stores)
    skip = {"channel", "account", "labels", *credentials, *_credential_columns(channel_cls)}
    given = {key: value for key, value in data.items() if key not in skip}
    given["name"] = name
    for option_name, option in channel_cls.account_options.items():
        if option.kind in LIST_KINDS and isinstance(given.get(option_name), str):
            given[option_name] = _list(given[option_name], option.kind)
    validator = _Validator("", base_dir, {}, {channel: channel_cls})
    validator.regions = tuple(channel_cls.regions)
    node = validator.from_python(_literal(given), "")
    options = {key: option for key, option in channel_cls.account_options.items()
               if key not in credentials and option.kind not in ("secret", "secret_ref")}
    account_name = validator._account_name(node, "")
    settings = validator._section(node, options, "", core=("name", "region"))
    region = validator._region(node, "")
    labels = {**static_labels, **_label_values(data.get("labels", {}), problems)}
    problems += [f"labels.{key}: {message}" if key else f"labels: {message}"
                 for key, message in label_problems(labels)]
    problems += [_message(problem.path, problem.message) for problem in validator.problems]
    if problems or settings is None or not isinstance(account_name, str) or \
            not isinstance(region, str):
        raise RowInvalid(problems or ["is not a valid account"])
    settings.update(credentials)
    return Account(channel=channel, name=name, region=region, settings=settings,
                   labels=labels, source=source)


def _credential_columns(channel_cls: type[Channel]) -> set[str]:
    columns = set()
    for column in secret_columns(channel_cls):
        columns |= {column, f"{column}_file", column + REF_SUFFIX, column + WITHHELD_SUFFIX}
    return columns


def _message(path: str, message: str) -> str:
    path = "account" if path == "name" else path
    return f"{path}: {message}" if path else message


def _label_values(labels: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(labels, dict):
        problems.append("labels: must be an object of label name to value")
        return {}
    values = {}
    for key, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            problems.append(f"labels.{key}: must be a string")
        elif value != "":  # an empty label is no label, in Prometheus
            values[str(key)] = value if isinstance(value, str) else str(value)
    return values


def _list(text: str, kind: str) -> Any:
    """A list setting given as a JSON array or a comma-separated string."""
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text  # reported by the validator as not a list
    if kind == "int_list":
        return text  # the validator accepts "1,2,3" itself
    return [part.strip() for part in text.split(",") if part.strip()]


def _literal(value: Any) -> Any:
    """Strings as written: the validator's ${VAR} expansion must not apply to a row."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    return value


def _plain(value: Any) -> Any:
    """A database or JSON value as a JSON value."""
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _fingerprint(value: Any) -> str:
    from agent.channel import fingerprint

    return fingerprint(str(value))

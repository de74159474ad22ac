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
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.channel import Account, Channel
from agent.inventory.credentials import (
    WITHHELD_SUFFIX,
    credential_columns,
    row_credentials,
    secret_columns,
    store_references,
)
from agent.secrets.registry import SecretStores

LABEL_PREFIX = "label_"


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
    ``channels`` are the classes of the channels the source feeds. The hot loop of every
    refresh: it runs for every row, changed or not."""
    if not isinstance(raw, Mapping):
        return RowProblem(source, row, "", "must be an object with channel and account")
    data: dict[str, Any] = {}
    labels: dict[str, Any] | None = None
    for key, value in raw.items():
        if value is None:
            continue
        if value.__class__ is not str and value.__class__ is not int:
            value = _plain(value)
        if key.__class__ is not str:
            return RowProblem(source, row, "", "column names must be strings")
        if key.startswith(LABEL_PREFIX):
            if labels is None:
                labels = {}
            labels[sys.intern(key[6:])] = value
        elif key == "labels" and isinstance(value, dict):
            labels = {**(labels or {}), **{k: v for k, v in value.items() if v is not None}}
        else:
            data[key] = value
    if labels:
        data["labels"] = labels
    channel, account = data.get("channel"), data.get("account")
    if channel.__class__ is not str or account.__class__ is not str or not channel or \
            not account:
        missing = [name for name, value in (("channel", channel), ("account", account))
                   if not isinstance(value, str) or not value]
        return RowProblem(source, row, "", f"{' and '.join(missing)} must be non-empty "
                                           f"strings")
    cls = channels.get(channel)
    if cls is None:
        fed = ", ".join(sorted(channels))
        return RowProblem(source, row, f"{channel}/{account}",
                          f"channel {channel!r} is not fed by this source (it feeds {fed})")
    public = data
    for column in secret_columns(cls):
        if column in data:
            if public is data:
                public = dict(data)
            public[column + WITHHELD_SUFFIX] = _fingerprint(public.pop(column))
    return Candidate((_kept(channel), _kept(account)), row, data, canonical(public))


def _kept(text: str) -> str:
    """``text`` as the account keeps it: one string object per value, however many accounts
    or rows repeat it (interned), and not the answer's own object: an answer's strings sit
    together in the allocator's arenas, which one kept string each would hold all of after
    the answer is dropped (~40% more memory held at 20,000 rows)."""
    return sys.intern(text.encode().decode())


# json.dumps builds an encoder per call when given options: one, made once, is 3x faster
canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


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
    """The account a row describes, validated by the same account model, with the same
    messages, as the configuration file's accounts (agent.config.loader.parse_account);
    :class:`RowInvalid` with every problem otherwise.

    A valid row goes straight into the model (a row has no lines to report and no ``${VAR}``
    to expand: the file's per-value tree would change nothing); only a row the model rejects
    takes the file's path, for its messages. Four times faster at 50,000 rows."""
    data = candidate.data
    skip = {"channel", "account", "labels", *credential_columns(channel_cls)}
    given: dict[str, Any] = {key: _listed(value) for key, value in data.items()
                             if key not in skip}
    given["name"] = candidate.key[1]
    problems: list[str] = []
    labels = {**static_labels, **_label_values(data.get("labels", {}), problems)}
    if labels:
        given["labels"] = labels
    credentials = row_credentials(channel_cls, data)
    references, reference_problems = store_references(channel_cls, data, stores)
    problems += reference_problems
    account = None if problems else _account(channel_cls, {**given, **credentials,
                                                           **references}, base_dir)
    if account is None:
        account = _checked(channel_cls, given, {**credentials, **references}, base_dir,
                           problems)
    account.source = sys.intern(source)
    return account


def _account(channel_cls: type[Channel], given: dict[str, Any], base_dir: Path
             ) -> Account | None:
    """The account, validated by its model; None when the model rejects it."""
    from pydantic import ValidationError

    from agent.config.loader import account_from, account_model

    context = {"base_dir": base_dir, "regions": channel_cls.regions, "path": "", "written": {}}
    try:
        values = account_model(channel_cls).model_validate(given, context=context)
    except ValidationError:
        return None
    return account_from(channel_cls, values)


def _checked(channel_cls: type[Channel], given: dict[str, Any], credentials: dict[str, Any],
             base_dir: Path, problems: list[str]) -> Account:
    """The account as the configuration file's are validated; :class:`RowInvalid` with
    ``problems`` and every problem the model finds."""
    from agent.config.loader import ConfigError, parse_account

    given = _literal({**given, **credentials})  # no ${VAR} expansion in a row, nor a token
    try:
        account = parse_account(channel_cls, given, where="", base_dir=base_dir, environ={})
    except ConfigError as exc:
        problems += [_message(p.path, p.message) for p in exc.problems]
        raise RowInvalid(problems) from None
    if problems:
        raise RowInvalid(problems)
    return account


def _message(path: str, message: str) -> str:
    path = "account" if path == "name" else path
    return f"{path}: {message}" if path else message


def _listed(value: Any) -> Any:
    """A list setting may come as a JSON array in a text column."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, list) else value
    return value


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

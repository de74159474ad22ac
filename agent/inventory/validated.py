"""A kept row's validated form: what the account model made of it, so a restart rebuilds
the account without validating the row again (the model costs ~0.1 ms a row: a second of
a 10,000-account start).

The form is the :class:`~agent.channel.Account`'s region, labels and settings as JSON, with
each secret setting as where it is, never what it is: a file's path, a secret store's name
(the reference is made again from the row's ``<name>_ref``, against the stores configured
now), or "withheld" where the row carried the token itself (the account then waits for its
source, as :mod:`agent.inventory.credentials` says). A setting whose value JSON cannot give
back as it was (a tuple, an enum, a date...) makes no form: that row is validated as before.

Each form is stored with the digest of the *rules* it was made under (:func:`rules`): the
account model's fields and the files that define them, the channel's regions, the source's
static labels and the configuration's directory. A form made under other rules, or one that
no longer fits the model's fields, is not used: the row is validated in full.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.channel import Account, Channel, Secret, SecretRef
from agent.inventory.credentials import REF_SUFFIX, secret_columns, withheld_ref
from agent.secrets.registry import SecretStores

_SECRET = "\x00secret"  # the key of a secret setting's object: no plain setting has it
_CORE = frozenset({"name", "region", "labels"})


class _Unfit(Exception):
    """A value the form cannot give back as it was."""


def encode(channel_cls: type[Channel], account: Account) -> str | None:
    """The validated form of ``account`` (of ``channel_cls``), or None when it has none."""
    secrets = secret_columns(channel_cls)
    settings: dict[str, Any] = {}
    try:
        for name, value in account.settings.items():
            settings[name] = _secret(name, value) if name in secrets else _plain(value)
    except _Unfit:
        return None
    return _dump({"region": account.region, "labels": account.labels, "settings": settings})


def decode(channel_cls: type[Channel], key: tuple[str, str], text: str, row: str,
           source: str, stores: SecretStores | None) -> Account | None:
    """The account a validated form describes; None when it does not fit (the caller then
    validates the row). ``row`` is the kept row's text, read for its store references."""
    try:
        form = json.loads(text)
    except ValueError:
        return None
    return decode_form(channel_cls, key, form, row, source, stores)


def decode_form(channel_cls: type[Channel], key: tuple[str, str], form: Any, row: str | None,
                source: str, stores: SecretStores | None) -> Account | None:
    """:func:`decode` of a form already parsed (the restore snapshot keeps them parsed; the
    form's settings are taken, not copied). ``row`` is needed only by a form that names a
    secret store (:func:`reads_row`)."""
    return form_decoder(channel_cls, source, stores)(key, form, row)


def form_decoder(channel_cls: type[Channel], source: str, stores: SecretStores | None,
                 ) -> Callable[[tuple[str, str], Any, str | None], Account | None]:
    """:func:`decode_form` for many forms of one channel and source: what does not depend
    on the form (the model's setting names, its secret settings) is looked up once, not once
    per account (50,000 at a start that restores them)."""
    names = _setting_names(channel_cls)
    secrets = secret_columns(channel_cls)
    intern = sys.intern
    source = intern(source)

    def decode_one(key: tuple[str, str], form: Any, row: str | None) -> Account | None:
        try:
            settings = form["settings"]
            region, labels = form["region"], form["labels"]
        except (KeyError, TypeError):
            return None
        if not isinstance(settings, dict) or settings.keys() != names or \
                not isinstance(region, str) or not isinstance(labels, dict):
            return None
        shared = {}
        for label, value in labels.items():
            if not isinstance(value, str):
                return None
            shared[intern(label)] = intern(value)
        for name in secrets:
            value = settings.get(name)
            if value is None:
                continue
            if not isinstance(value, dict) or _SECRET not in value:
                return None
            ref = _secret_ref(channel_cls, name, value[_SECRET], row, stores)
            if ref is None:
                return None
            settings[name] = ref
        return Account(intern(key[0]), key[1], intern(region), settings, shared, source)

    return decode_one


def reads_row(form: Any) -> bool:
    """Whether decoding ``form`` (parsed) needs its row's text: a setting in a secret store is
    referred to again from the row's ``<name>_ref`` column."""
    settings = form.get("settings") if isinstance(form, dict) else None
    return isinstance(settings, dict) and any(
        isinstance(value, dict) and isinstance(value.get(_SECRET), dict)
        and "store" in value[_SECRET] for value in settings.values())


@functools.cache
def rules(channel_cls: type[Channel], labels: tuple[tuple[str, str], ...],
          base_dir: Path) -> str:
    """The digest of what a validated form depends on besides its row (``labels``: the
    source's static labels, sorted). Any of it changing sends every row through the model
    again, once."""
    from agent.config.loader import account_model

    model = account_model(channel_cls)
    fields = [(name, repr(f.annotation), repr(f.default), repr(f.metadata))
              for name, f in model.model_fields.items()]
    # the code that validates: a plugin or the agent upgraded changes a file's size or time
    files = sorted({getattr(sys.modules.get(c.__module__), "__file__", None) or c.__module__
                    for c in (*model.__mro__, channel_cls)
                    if not c.__module__.startswith(("pydantic", "builtins", "typing"))}
                   | {__file__, _modelbase_file()})
    stamps = [(f, _stamp(f)) for f in files]
    text = repr((channel_cls.name, channel_cls.regions, fields, stamps, labels, str(base_dir)))
    text = re.sub(r" at 0x[0-9a-f]+", "", text)  # a validator function's address, per process
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _modelbase_file() -> str:
    from agent.config import modelbase

    return modelbase.__file__ or "agent.config.modelbase"


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)


@functools.cache
def _setting_names(channel_cls: type[Channel]) -> frozenset[str]:
    from agent.config.loader import account_model

    return frozenset(account_model(channel_cls).model_fields) - _CORE


def _secret(name: str, value: Any) -> Any:
    """Where a secret setting's value is: never the value."""
    if value is None:
        return None
    if isinstance(value, Secret) or (isinstance(value, SecretRef) and value.value is not None):
        return {_SECRET: {"withheld": True}}
    if isinstance(value, SecretRef):
        if value.store is not None:
            return {_SECRET: {"store": value.store}}
        if value.withheld:
            return {_SECRET: {"withheld": True}}
        return {_SECRET: {"path": value._path, "source": value.source}}
    raise _Unfit(name)


def _secret_ref(channel_cls: type[Channel], name: str, where: Any, row: str | None,
                stores: SecretStores | None) -> SecretRef | None:
    if not isinstance(where, dict):
        return None
    if where.get("withheld"):
        return withheld_ref(name)
    if "store" in where:
        from agent.inventory.credentials import store_references

        if row is None:
            return None
        try:
            data = json.loads(row)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get(name + REF_SUFFIX) is None:
            return None
        refs, problems = store_references(channel_cls, data, stores)
        return None if problems else refs.get(name)
    path, source = where.get("path"), where.get("source")
    if not isinstance(path, str) or not isinstance(source, str):
        return None
    return SecretRef(path=path, source=source)


def _plain(value: Any) -> Any:
    """``value`` if JSON gives it back as it is (same types), else :class:`_Unfit`."""
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        if not math.isfinite(value):
            raise _Unfit(value)
        return value
    if cls is list:
        return [_plain(item) for item in value]
    if cls is dict:
        if _SECRET in value or any(k.__class__ is not str for k in value):
            raise _Unfit(value)
        return {k: _plain(v) for k, v in value.items()}
    raise _Unfit(cls.__name__)


_dump = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                         allow_nan=False).encode

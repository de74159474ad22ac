"""Secrets as the agent holds them: a value that never shows itself, and where one lives.

Plugins import these names from :mod:`agent.channel`, the plugin-facing module.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path
from typing import Any

from agent.redact import register_secret, release_secret


class Secret:
    """A secret string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_fingerprint", "_registered", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._fingerprint: str | None = None
        self._registered = register_secret(value)

    def __del__(self) -> None:
        if getattr(self, "_registered", False):
            try:  # noqa: SIM105 - contextlib.suppress costs more, for every secret dropped
                release_secret(self._value)
            except Exception:  # noqa: BLE001, S110 - at interpreter exit the module may be gone
                pass

    # Every Secret object is made by __init__ (which registers its value for masking): a copy
    # made without it would release a value it never registered.
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict) -> Secret:
        return self

    def __reduce__(self) -> tuple:
        return (Secret, (self._value,))

    def reveal(self) -> str:
        return self._value

    def fingerprint(self) -> str:
        """A short, non-reversible identifier, safe to store and show."""
        if self._fingerprint is None:  # a check asks several times
            self._fingerprint = fingerprint(self._value)
        return self._fingerprint

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


class MissingSecret(Exception):
    """A secret is absent or empty. ``problem`` says what is wrong ("file X is empty");
    the message also names where the secret was configured."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}" if source else problem)
        self.problem = problem


class SecretRef:
    """Where a secret lives: read it at use time, so an updated file is picked up without reload.

    Exactly one of ``path``, ``value`` and ``store`` is set (``value`` comes from the config
    file itself, usually through ``${VAR}`` expansion; ``store``/``key`` name a secret store's
    entry, read from ``registry``, the :class:`agent.secrets.registry.SecretStores` whose
    cache the core fills before each check).

    Immutable, compared and hashed by everything but ``registry``. Every account holds one,
    so it is small: slots, the path kept as text (a ``Path`` is made when asked for) and the
    repeated strings (``source``, ``store``, ``mode``) interned.
    """

    __slots__ = ("_path", "value", "source", "store", "key", "mode", "registry")

    _path: str | None
    value: Secret | None
    source: str  # e.g. "accounts[0].refresh_token_file"; never the secret itself
    store: str | None
    key: str | None
    mode: str | None  # owner / observer for this account; None: the store's
    registry: Any

    def __init__(self, path: Path | str | None = None, value: Secret | None = None,
                 source: str = "", store: str | None = None, key: str | None = None,
                 mode: str | None = None, registry: Any = None) -> None:
        put = object.__setattr__
        put(self, "_path", None if path is None else str(path))
        put(self, "value", value)
        put(self, "source", sys.intern(source))
        put(self, "store", None if store is None else sys.intern(store))
        put(self, "key", key)
        put(self, "mode", None if mode is None else sys.intern(mode))
        put(self, "registry", registry)

    @property
    def path(self) -> Path | None:
        return None if self._path is None else Path(self._path)

    def replace(self, **changes: Any) -> SecretRef:
        """A copy with ``changes`` (as :func:`dataclasses.replace`)."""
        fields = {"path": self._path, "value": self.value, "source": self.source,
                  "store": self.store, "key": self.key, "mode": self.mode,
                  "registry": self.registry}
        return SecretRef(**{**fields, **changes})

    def _fields(self) -> tuple[Any, ...]:
        return (self._path, self.value, self.source, self.store, self.key, self.mode)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"SecretRef is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"SecretRef is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not SecretRef:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"SecretRef(path={self.path!r}, value={self.value!r}, source={self.source!r}, "
                f"store={self.store!r}, key={self.key!r}, mode={self.mode!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (SecretRef, (self._path, *self._fields()[1:], self.registry))

    @property
    def withheld(self) -> bool:
        """Neither a value nor a file: an inventory account restored from the state file,
        whose token (held by its source only) comes back with the source's next answer."""
        return self._path is None and self.value is None and self.store is None

    def read(self) -> Secret:
        if self.store is not None:
            return self.registry.cached(self)
        if self.withheld:
            raise MissingSecret(self.source, "is not known yet (withheld)")
        if self.value is not None:
            if not self.value.reveal():
                raise MissingSecret(self.source, "is empty")
            return self.value
        path = self._path
        assert path is not None
        try:
            text = _read_small_file(path).decode("utf-8").strip()
        except FileNotFoundError:
            raise MissingSecret(self.source, f"file {path} does not exist") from None
        except OSError as exc:
            problem = f"cannot read file {path}: {exc.strerror}"
            raise MissingSecret(self.source, problem) from None
        except UnicodeDecodeError:
            raise MissingSecret(self.source, f"file {path} is not UTF-8 text") from None
        except ValueError as exc:
            raise MissingSecret(self.source, f"file {path} {exc}") from None
        if not text:
            raise MissingSecret(self.source, f"file {path} is empty")
        return Secret(text)


MAX_SECRET_FILE = 64 * 1024


def _read_small_file(path: str) -> bytes:
    """A regular file's bytes. A FIFO or device (``/dev/zero``) would block or never end:
    ValueError, as for a file too large to be a secret. (``os`` calls, not ``pathlib``'s:
    this runs at every check, and ``Path.is_file`` + ``Path.open`` cost twice as much.)"""
    try:
        mode = os.stat(path).st_mode
    except NotADirectoryError:  # a parent is a file: as missing, as pathlib says
        raise FileNotFoundError(path) from None
    if not stat.S_ISREG(mode):
        raise ValueError("is not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while len(data) <= MAX_SECRET_FILE:
            chunk = os.read(fd, MAX_SECRET_FILE + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE:
        raise ValueError(f"is larger than {MAX_SECRET_FILE // 1024} KiB: not a secret")
    return data

"""Secrets as the agent holds them: a value that never shows itself, and where one lives.

Plugins import these names from :mod:`agent.channel`, the plugin-facing module.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.redact import register_secret


class Secret:
    """A secret string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value", "_fingerprint")

    def __init__(self, value: str) -> None:
        self._value = value
        self._fingerprint: str | None = None
        register_secret(value)

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


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: read it at use time, so an updated file is picked up without reload.

    Exactly one of ``path``, ``value`` and ``store`` is set (``value`` comes from the config
    file itself, usually through ``${VAR}`` expansion; ``store``/``key`` name a secret store's
    entry, read from ``registry``, the :class:`agent.secrets.registry.SecretStores` whose
    cache the core fills before each check).
    """

    path: Path | None = None
    value: Secret | None = None
    source: str = ""  # e.g. "accounts[0].refresh_token_file"; never the secret itself
    store: str | None = None
    key: str | None = None
    mode: str | None = None  # owner / observer for this account; None: the store's
    registry: Any = field(default=None, compare=False, repr=False)

    @property
    def withheld(self) -> bool:
        """Neither a value nor a file: an inventory account restored from the state file,
        whose token (held by its source only) comes back with the source's next answer."""
        return self.path is None and self.value is None and self.store is None

    def read(self) -> Secret:
        if self.store is not None:
            return self.registry.cached(self)
        if self.withheld:
            raise MissingSecret(self.source, "is not known yet (withheld)")
        if self.value is not None:
            if not self.value.reveal():
                raise MissingSecret(self.source, "is empty")
            return self.value
        assert self.path is not None
        try:
            text = _read_small_file(self.path).decode("utf-8").strip()
        except FileNotFoundError:
            raise MissingSecret(self.source, f"file {self.path} does not exist") from None
        except OSError as exc:
            problem = f"cannot read file {self.path}: {exc.strerror}"
            raise MissingSecret(self.source, problem) from None
        except UnicodeDecodeError:
            raise MissingSecret(self.source, f"file {self.path} is not UTF-8 text") from None
        except ValueError as exc:
            raise MissingSecret(self.source, f"file {self.path} {exc}") from None
        if not text:
            raise MissingSecret(self.source, f"file {self.path} is empty")
        return Secret(text)


MAX_SECRET_FILE = 64 * 1024


def _read_small_file(path: Path) -> bytes:
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

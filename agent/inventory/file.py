"""The ``file`` inventory source: files matching a glob, each a YAML or JSON list of accounts.

Like Prometheus ``file_sd``: the files are re-read when they change (size, modification time
or inode), and nothing else is read while none did. A producer should write a new file and
rename it into place; one that rewrites a file in place must not make the agent see a
shorter list, so:

- a file that changes while it is read is read again at the next refresh;
- a file changed less than ``settle`` ago may still be being written: its previous version is
  used until it settles (a new file is not used until then);
- a file that does not parse fails the whole refresh: the last good list is kept.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from agent.config.types import Duration, FilePath
from agent.hookspecs import hookimpl
from agent.inventory.source import (
    InventoryError,
    InventorySource,
    InventorySourceSettings,
    Row,
)

MAX_FILE_BYTES = 64 * 1024 * 1024
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class _Version:
    """What identifies a file's content without reading it."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> _Version:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino)


class FileSettings(InventorySourceSettings):
    files: FilePath = Field(description="A glob, e.g. inventory/*.yaml (** matches directories)")
    settle: Duration = Field("2s", description="A file changed more recently may still be "
                                               "being written: its previous version is used")


class FileInventory(InventorySource):
    type = "file"
    title = "YAML or JSON files, each a list of accounts (like Prometheus file_sd)"
    Settings = FileSettings

    def __init__(self, name: str, settings: dict[str, Any],
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, settings)
        self._pattern = str(settings["files"])
        self._settle = float(settings.get("settle") or 0.0)
        self._clock = clock
        self._files: dict[str, tuple[_Version, list[Any]]] = {}  # path -> version, its rows
        self._answered: tuple[tuple[str, _Version], ...] | None = None

    def describe(self) -> str:
        return f"file {self._pattern}"

    async def fetch(self) -> list[Row] | None:
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: tests/test_stop_in_time.py
                return await asyncio.to_thread(self._read)
        except TimeoutError:
            raise InventoryError("timeout", f"reading {self._pattern} took over "
                                            f"{self.timeout:g}s") from None

    def _read(self) -> list[Row] | None:
        paths = sorted(glob.glob(self._pattern, recursive=True))
        now = self._clock()
        files: dict[str, tuple[_Version, list[Any]]] = {}
        for path in paths:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue  # removed since the glob
            except OSError as exc:
                raise InventoryError("unavailable", f"cannot read {path}: {exc.strerror}") \
                    from None
            if not os.path.isfile(path):
                continue
            version = _Version.of(stat)
            known = self._files.get(path)
            if known is not None and known[0] == version:
                files[path] = known
            elif now - stat.st_mtime < self._settle:
                if known is not None:
                    files[path] = known  # still being written, maybe: the previous version
            else:
                rows = self._parse(path, version)
                if rows is not None:
                    files[path] = (version, rows)
                elif known is not None:
                    files[path] = known  # changed while read: again next time
        self._files = files
        answered = tuple((path, version) for path, (version, _) in files.items())
        if answered == self._answered:
            return None
        self._answered = answered
        return [row for _, rows in files.values() for row in rows]

    def _parse(self, path: str, version: _Version) -> list[Any] | None:
        """The file's list, or None when it changed while it was read."""
        if version.size > MAX_FILE_BYTES:
            raise InventoryError("bad_response", f"{path} is larger than "
                                                 f"{MAX_FILE_BYTES // 1024 // 1024} MiB")
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
                after = _Version.of(os.fstat(f.fileno()))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InventoryError("unavailable", f"cannot read {path}: {exc.strerror}") from None
        if after != version or len(data) != version.size:
            return None
        try:
            text = data.decode("utf-8")
            value = json.loads(text) if Path(path).suffix == ".json" else \
                yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
        except UnicodeDecodeError:
            raise InventoryError("bad_response", f"{path} is not UTF-8 text") from None
        except ValueError as exc:
            raise InventoryError("bad_response", f"{path} is not valid JSON (line "
                                                 f"{getattr(exc, 'lineno', '?')})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise InventoryError("bad_response", f"{path} is not valid YAML{line}") from None
        if value is None:
            return []  # an empty file: no accounts
        if not isinstance(value, list):
            raise InventoryError("bad_response", f"{path} must hold a list of accounts")
        return value


@hookimpl
def register_inventory_sources(register: Callable[[type], None]) -> None:
    register(FileInventory)

"""The ``file`` source type: a file per data set, its modification time or a JSON field.

The path is a template with ``{channel}``, ``{account}``, ``{region}`` and ``{dataset}``.
A missing file means the data set has no data yet (an account whose pipeline never ran); a
file that cannot be read, is not JSON or lacks the field is an error of the source.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.config.types import FilePath, PositiveDuration
from agent.freshness.source import Dataset, FreshnessSource, PolledSourceSettings, SourceError
from agent.freshness.timestamps import to_unix, zone
from agent.hookspecs import hookimpl

FIELDS = ("channel", "account", "region", "dataset")
MAX_JSON_BYTES = 1024 * 1024


class FileSettings(PolledSourceSettings):
    interval: PositiveDuration = Field("1m", description="How often the files are read")
    path: FilePath = Field(description="template with {channel}, {account}, {region}, {dataset}")
    json_field: str | None = Field(None, description="dotted path of a timestamp in the "
                                   "file's JSON (a.b.0.c); default: the file's modification time")
    timezone: str | None = Field(None, description="IANA zone of times read without a UTC "
                                                   "offset; default UTC")


class FileSource(FreshnessSource):
    type = "file"
    title = "File per data set: modification time or a JSON field"
    default_interval = 60.0
    Settings = FileSettings

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        super().__init__(name, settings)
        self._template = str(settings["path"])
        _check_template(self._template)
        field = settings.get("json_field")
        self._field = field.split(".") if field else None
        if self._field is not None and not all(self._field):
            raise ValueError("json_field must be dotted names like last_sync.finished_at")
        self._naive_zone = zone(settings.get("timezone"))

    def path_of(self, dataset: Dataset) -> Path:
        return Path(self._template.format(channel=dataset.channel, account=dataset.account,
                                          region=dataset.region, dataset=dataset.name))

    async def latest(self, dataset: Dataset) -> float | None:
        path = self.path_of(dataset)
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: tests/test_stop_in_time.py
                return await asyncio.to_thread(self._read, path)
        except TimeoutError:
            raise SourceError("timeout", f"reading {path} took over {self.timeout:g}s") from None

    def _read(self, path: Path) -> float | None:
        try:
            if self._field is None:
                return os.stat(path).st_mtime
            with path.open("rb") as f:
                data = f.read(MAX_JSON_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError("unavailable", f"cannot read {path}: {exc.strerror}") from None
        if len(data) > MAX_JSON_BYTES:
            raise SourceError("bad_value", f"{path} is larger than {MAX_JSON_BYTES} bytes")
        try:
            value: Any = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SourceError("bad_value", f"{path} is not JSON") from None
        value = _dig(value, self._field, path)
        if value is None:
            return None
        try:
            return to_unix(value, naive=self._naive_zone)
        except ValueError as exc:
            raise SourceError("bad_value", f"{path}: {'.'.join(self._field)} {exc}") from None


def _dig(value: Any, field: list[str], path: Path) -> Any:
    for i, part in enumerate(field):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise SourceError("bad_value", f"{path} has no field {'.'.join(field[:i + 1])}")
    return value


def _check_template(template: str) -> None:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        raise ValueError("path has an unbalanced { or }; write {{ and }} for literal braces") \
            from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in FIELDS or spec or conversion:
            raise ValueError(f"path may only use {', '.join('{' + f + '}' for f in FIELDS)} "
                             f"(write {{{{ and }}}} for literal braces)")


@hookimpl
def register_freshness_sources(register: Callable[[type], None]) -> None:
    register(FileSource)

"""``type: exec``: an executable that fetches secrets, speaking the Datadog Agent's
``secret_backend_command`` protocol, so a helper written for Datadog works unchanged.

Protocol (docs.datadoghq.com/agent/guide/secrets-management): the command reads
``{"version": "1.0", "secrets": ["key1", ...]}`` on stdin and writes
``{"key1": {"value": "...", "error": null}, ...}`` on stdout; a non-zero exit fails the whole
batch. Here, ``"value": null`` with ``"error": null`` means "no such key" (the check reports
``missing_credential``); an ``error`` is a failure of that key only (transient,
``secret_unavailable``): a helper cannot tell us "revoked", only "could not fetch".

Permissions, as Datadog requires of ``secret_backend_command``: the executable must belong to
the agent's user (or root) and give group and others no rights at all; otherwise the store is
refused with a message saying what to run. Keys travel on stdin only, never in the argument
list; the environment is a minimal one plus the variables named in ``pass_env``, so a client
secret the agent took from its own environment never reaches the helper. Stderr is read up to
a limit and logged redacted and truncated; stdout beyond ``output_max_size`` fails the batch.

Write-back: ``write_command`` gets ``{"version": "1.0", "key": "...", "value": "..."}`` on
stdin; exit 0 means stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.channel import Secret
from agent.config.types import Int, problem
from agent.redact import redact
from agent.secrets.base import (
    Fetched,
    SecretStore,
    StoreSettings,
    StoreSetupError,
    StoreUnavailable,
    fetched,
)

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "1.0"
DEFAULT_OUTPUT_MAX_SIZE = 1024 * 1024  # Datadog's secret_backend_output_max_size default
STDERR_LOG_LIMIT = 512  # characters of a helper's stderr that reach the log
_STDERR_READ_LIMIT = 64 * 1024
_BASE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


class ExecSettings(StoreSettings):
    command: list[str] = Field(description="The executable and its arguments; it gets the "
                                           "keys on stdin (Datadog secret_backend_command)")
    write_command: list[str] | None = Field(None, description="Gets {version, key, value} on "
                                                              "stdin for write-back")
    output_max_size: Int = Field(DEFAULT_OUTPUT_MAX_SIZE, ge=1024,
                                 description="Bytes of stdout accepted from one run")
    pass_env: list[str] = Field(default_factory=list,
                                description="Environment variables the command may see")

    @field_validator("command", "write_command")
    @classmethod
    def _executable(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0].strip()):
            raise problem("must be a list: the executable, then its arguments")
        return value


def check_permissions(executable: str) -> Path:
    """The executable's path, if Datadog's rule allows running it; StoreSetupError otherwise."""
    found = shutil.which(executable) if os.sep not in executable else executable
    if found is None:
        raise StoreSetupError(f"executable {executable} not found (give an absolute path)")
    path = Path(found)
    try:
        info = path.stat()
    except OSError as exc:
        raise StoreSetupError(f"cannot stat {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StoreSetupError(f"{path} is not a regular file")
    if info.st_uid not in (os.geteuid(), 0):
        raise StoreSetupError(f"{path} must belong to the agent's user (uid {os.geteuid()}) "
                              f"or root: chown it")
    if info.st_mode & 0o077:
        raise StoreSetupError(f"{path} must give group and others no rights "
                              f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 700 {path}")
    if not info.st_mode & stat.S_IXUSR:
        raise StoreSetupError(f"{path} is not executable by its owner: chmod 700 {path}")
    return path


class ExecStore(SecretStore):
    type = "exec"
    Settings = ExecSettings
    settings: ExecSettings

    def __init__(self, name: str, settings: StoreSettings, base_dir: Path | None = None) -> None:
        super().__init__(name, settings, base_dir)
        check_permissions(self.settings.command[0])
        if self.settings.write_command:
            check_permissions(self.settings.write_command[0])

    @property
    def writable(self) -> bool:  # type: ignore[override]
        return self.settings.write_command is not None

    async def read(self, keys: Sequence[str]) -> dict[str, Fetched | None | StoreUnavailable]:
        request = {"version": PROTOCOL_VERSION, "secrets": list(keys)}
        stdout = await self._run(self.settings.command, request)
        try:
            answer = json.loads(stdout)
        except (ValueError, UnicodeDecodeError):
            raise StoreUnavailable("the command's output is not JSON") from None
        if not isinstance(answer, dict):
            raise StoreUnavailable("the command's output is not a JSON object")
        return {key: _entry(answer.get(key)) for key in keys}

    async def write(self, key: str, value: Secret, previous: Fetched | None) -> None:
        if not self.settings.write_command:
            raise StoreUnavailable(f"store {self.name} has no write_command")
        request = {"version": PROTOCOL_VERSION, "key": key, "value": value.reveal()}
        await self._run(self.settings.write_command, request, extra=[value.reveal()])

    async def probe(self) -> None:
        await self.read(["channel-agent-connectivity-probe"])

    async def _run(self, command: list[str], request: dict, extra: Sequence[str] = ()) -> bytes:
        try:
            executable = check_permissions(command[0])
        except StoreSetupError as exc:
            raise StoreUnavailable(str(exc)) from None
        env = {name: os.environ[name] for name in (*_BASE_ENV, *self.settings.pass_env)
               if name in os.environ}
        try:
            process = await asyncio.create_subprocess_exec(
                str(executable), *command[1:], stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                start_new_session=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot run {executable}: {exc.strerror}") from None
        limit = self.settings.output_max_size
        try:
            async with asyncio.timeout(self.settings.timeout):
                stdout, stderr, _ = await asyncio.gather(
                    _read_limited(process.stdout, limit + 1),
                    _read_limited(process.stderr, _STDERR_READ_LIMIT),
                    _feed(process, json.dumps(request).encode()))
                if len(stdout) > limit:
                    raise StoreUnavailable(f"{executable} wrote more than {limit} bytes")
                code = await process.wait()
        except TimeoutError:
            raise StoreUnavailable(f"{executable} did not finish within "
                                   f"{self.settings.timeout:g}s") from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
                await process.wait()
        if stderr.strip():
            log.warning("secret store %s: %s wrote on stderr: %s", self.name, executable,
                        _clean_stderr(stderr, stdout, extra))
        if code != 0:
            raise StoreUnavailable(f"{executable} exited with status {code}")
        return stdout


def _entry(item: Any) -> Fetched | None | StoreUnavailable:
    if not isinstance(item, dict):
        return StoreUnavailable("the command did not answer this key")
    value, error = item.get("value"), item.get("error")
    if error is not None:
        # the helper's words, which could quote the secret: only say that it failed
        return StoreUnavailable("the command reported an error for this key")
    if value is not None and not isinstance(value, str):
        return StoreUnavailable("the command's value for this key is not a string")
    return fetched(value)


def _clean_stderr(stderr: bytes, stdout: bytes, extra: Sequence[str]) -> str:
    """A helper's stderr as one log-safe line: every value it answered masked, truncated."""
    values = list(extra)
    with contextlib.suppress(ValueError, AttributeError, UnicodeDecodeError):
        values += [item.get("value") or "" for item in json.loads(stdout).values()
                   if isinstance(item, dict) and isinstance(item.get("value"), str)]
    text = redact(stderr.decode("utf-8", "replace"), values)
    text = " ".join(text.split())
    return text if len(text) <= STDERR_LOG_LIMIT else text[:STDERR_LOG_LIMIT] + "…(truncated)"


async def _read_limited(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    """At most ``limit`` bytes; the rest is drained so the process never blocks on a full pipe."""
    assert stream is not None
    data = bytearray()
    while chunk := await stream.read(65536):
        if len(data) < limit:
            data += chunk[: limit - len(data)]
    return bytes(data)


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
    process.stdin.close()

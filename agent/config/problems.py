"""A configuration problem (file, line, key path, message) and the error that lists them all."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from agent.redact import redact


@dataclass(frozen=True)
class ConfigProblem:
    source: str
    line: int | None
    path: str  # e.g. "channels.amazon_ads.accounts[0].region"; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def unknown_name(what: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown {what} '{name}' (did you mean '{close[0]}'?)"
    if not known:
        return f"unknown {what} '{name}' (none are accepted here)"
    return f"unknown {what} '{name}' (expected one of: {', '.join(known)})"


class ProblemList:
    """Problems of one source as they are found; :meth:`error` lists them by line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[ConfigProblem] = []

    def add(self, line: int | None, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.source, line, path, message))

    def __bool__(self) -> bool:
        return bool(self.problems)

    def error(self) -> ConfigError:
        unique = list(dict.fromkeys(self.problems))
        unique.sort(key=lambda p: (p.line is None, p.line or 0))
        return ConfigError(unique)


def rejected(exc: Exception) -> str:
    """A plugin's exception, as a problem message may show it (secrets redacted)."""
    return f"{type(exc).__name__}: {redact(str(exc))}"

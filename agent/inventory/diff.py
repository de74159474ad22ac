"""Applying a source's new answer to its last good list: the diff and the removal guard.

Pure functions over plain data, run in a worker thread (a first list of 50,000 rows takes a
while to validate): :func:`evaluate` turns the answer's rows into the source's next list.
Rows whose canonical text did not change keep their :class:`Account` object as it was, so an
unchanged refresh validates nothing and changes nothing downstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.channel import Account, Channel
from agent.inventory.rows import Candidate, RowInvalid, RowProblem, normalise, validate_row
from agent.inventory.source import InventorySource
from agent.secrets.registry import SecretStores

Key = tuple[str, str]


@dataclass
class SourceList:
    """A source's accepted accounts and the canonical rows they came from."""

    accounts: dict[Key, Account] = field(default_factory=dict)
    texts: dict[Key, str] = field(default_factory=dict)
    # accounts restored without their token: validated again at the next answer
    incomplete: set[Key] = field(default_factory=set)


@dataclass
class Held:
    """A list that would remove too many accounts, waiting for ``removal_hold``."""

    digest: str  # of the answer's account keys: a different list starts the wait again
    since: float
    removing: int
    of: int
    rows: Sequence[Any]  # the answer, applied when the hold ends


@dataclass
class Outcome:
    """What one answer does: the next list (None: keep the current one), the rows skipped."""

    new: SourceList | None
    problems: list[RowProblem]
    held: Held | None = None
    added: int = 0
    removed: int = 0
    changed: int = 0

    @property
    def changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def candidates(name: str, rows: Sequence[Any], channels: Mapping[str, type[Channel]],
               ) -> tuple[dict[Key, Candidate], list[RowProblem]]:
    """The answer's usable rows by account (the first of two rows of one account wins)."""
    found: dict[Key, Candidate] = {}
    problems: list[RowProblem] = []
    for i, raw in enumerate(rows, 1):
        candidate = normalise(name, i, raw, channels)
        if isinstance(candidate, RowProblem):
            problems.append(candidate)
        elif candidate.key in found:
            problems.append(RowProblem(name, i, "/".join(candidate.key),
                                       f"the same account as row {found[candidate.key].row}; "
                                       f"this row is skipped"))
        else:
            found[candidate.key] = candidate
    return found, problems


def evaluate(source: InventorySource, current: SourceList, rows: Sequence[Any],
             channels: Mapping[str, type[Channel]], base_dir: Path, now: float,
             held: Held | None, revalidate: bool = False,
             stores: SecretStores | None = None) -> Outcome:
    """The source's next list from ``rows``; ``held`` is the answer waiting, if any."""
    found, problems = candidates(source.name, rows, channels)
    old = current.accounts
    removing = sum(1 for key in old if key not in found)
    if old and removing > source.max_removal * len(old):
        digest = _digest(found)
        if held is None or held.digest != digest:
            held = Held(digest, now, removing, len(old), rows)
        if now - held.since < source.removal_hold:
            held.rows = rows
            return Outcome(None, problems, held=held)
    outcome = Outcome(SourceList(), problems, removed=removing)
    new = outcome.new
    assert new is not None
    labels = source.labels
    for key, candidate in found.items():
        previous = old.get(key)
        if previous is not None and not revalidate and key not in current.incomplete and \
                current.texts.get(key) == candidate.text:
            new.accounts[key], new.texts[key] = previous, candidate.text
            continue
        try:
            account = validate_row(candidate, source=source.name, channel_cls=channels[key[0]],
                                   static_labels=labels, base_dir=base_dir, stores=stores)
        except RowInvalid as exc:
            problems.append(RowProblem(source.name, candidate.row, "/".join(key),
                                       "; ".join(exc.messages)))
            if previous is not None:  # keep what worked; report the row until it is fixed
                new.accounts[key], new.texts[key] = previous, current.texts.get(key, "")
                if key in current.incomplete:
                    new.incomplete.add(key)
            continue
        new.accounts[key], new.texts[key] = account, candidate.text
        if previous is None:
            outcome.added += 1
        elif previous != account:
            outcome.changed += 1
    problems.sort(key=lambda problem: problem.row or 0)
    return outcome


def restore(source: InventorySource, texts: Sequence[str],
            channels: Mapping[str, type[Channel]], base_dir: Path,
            stores: SecretStores | None = None) -> SourceList:
    """The list the state file kept; rows that no longer validate are left out."""
    from agent.inventory.credentials import WITHHELD_SUFFIX
    from agent.inventory.rows import restored

    result = SourceList()
    for i, text in enumerate(texts, 1):
        candidate = restored(source.name, i, text)
        if isinstance(candidate, RowProblem) or candidate.key[0] not in channels:
            continue
        try:
            account = validate_row(candidate, source=source.name,
                                   channel_cls=channels[candidate.key[0]],
                                   static_labels=source.labels, base_dir=base_dir,
                                   stores=stores)
        except RowInvalid:
            continue
        result.accounts[candidate.key], result.texts[candidate.key] = account, text
        if WITHHELD_SUFFIX in text:
            result.incomplete.add(candidate.key)
    return result


def _digest(found: Mapping[Key, Candidate]) -> str:
    keys = "\n".join(sorted(f"{channel}/{account}" for channel, account in found))
    return hashlib.sha256(keys.encode()).hexdigest()

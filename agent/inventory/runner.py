"""Running the inventory sources: one loop per source, every ``interval``.

A refresh asks the source for its list, turns it into the source's next list
(:func:`agent.inventory.diff.evaluate`, in a worker thread) and, when that changed anything,
tells the agent (``on_change``), which applies the difference to the running accounts. A
failing source keeps its last good list, in memory and in the state file.

Accounts of all sources are merged with the configuration file's: the file wins over any
source, and of two sources the one whose name sorts first wins; every duplicate is reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent import steps
from agent.channel import Account, Channel
from agent.freshness.source import Dataset
from agent.inventory import store as saved
from agent.inventory.diff import (
    Held,
    Key,
    Outcome,
    SourceList,
    evaluate,
    restore,
    restore_snapshot,
)
from agent.inventory.rows import RowProblem
from agent.inventory.source import InventoryError, InventorySource
from agent.named_loops import NamedLoops
from agent.redact import redact
from agent.secrets.registry import SecretStores
from agent.steps import Steps, drain
from agent.storage.state import StateStore

if TYPE_CHECKING:
    from agent.config.loader import Config

log = logging.getLogger(__name__)

HARD_TIMEOUT_GRACE = 1.0
LOGGED_PROBLEMS = 5  # rows logged one by one when a refresh skips some; the rest are counted


@dataclass
class SourceStatus:
    """What the metrics, the status API and the CLI show about one source."""

    accepted: SourceList = field(default_factory=SourceList)
    up: bool | None = None  # None until the first refresh
    last_success: float | None = None
    duration: float | None = None  # of the last refresh, seconds
    failures: int = 0  # refreshes that failed since the agent started
    error: str = ""  # the last failure, "" once the source works again
    problems: list[RowProblem] = field(default_factory=list)  # rows the last answer skipped
    duplicates: list[str] = field(default_factory=list)  # accounts another source (or the
    held: Held | None = None                              # file) provides; a held removal
    revalidate: bool = False  # its settings changed: validate every row of the next answer


class InventoryRunner:
    def __init__(self, store: StateStore | None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self.monotonic = monotonic
        self.sources: dict[str, InventorySource] = {}
        self.status: dict[str, SourceStatus] = {}
        self.channels: dict[str, type[Channel]] = {}
        self.base_dir = Path.cwd()
        self.stores: SecretStores | None = None  # what store references in rows resolve to
        self.loops = NamedLoops("inventory")
        self._locks: dict[str, asyncio.Lock] = {}
        self._on_change: Callable[[], object] | None = None

    def configure(self, sources: Mapping[str, InventorySource],
                  channels: Mapping[str, type[Channel]], base_dir: Path,
                  stores: SecretStores | None = None) -> list[InventorySource]:
        """Adopt the configured sources (at start and at every reload); returns the source
        objects replaced, for the caller to close. A source kept by name keeps its list; a new
        one starts from what the state file kept for it."""
        replaced = [s for name, s in self.sources.items() if sources.get(name) is not s]
        # a new configuration's secret stores: rows with store references are bound anew
        rules_changed = (dict(channels) != self.channels or base_dir != self.base_dir
                         or (stores is not self.stores and bool(stores or self.stores)))
        self.channels, self.base_dir, self.stores = dict(channels), base_dir, stores
        status = {}
        for name, source in sources.items():
            old = self.sources.get(name)
            current = self.status.get(name)
            if current is None:
                current = self._restored(source)
            elif rules_changed or old is None or old.settings != source.settings:
                current.revalidate = True
            status[name] = current
        if self.store is not None:
            for name in set(self.sources) - set(sources):
                saved.forget(self.store, name)  # a source removed from the configuration
        self.sources, self.status = dict(sources), status
        if self._on_change is not None:
            self.start(self._on_change)
        return replaced

    def _restored(self, source: InventorySource) -> SourceStatus:
        fed = {c: self.channels[c] for c in source.channels if c in self.channels}
        # the restore snapshot's kept lists (agent.storage.snapshot), while the service is built
        lists = self.store.snapshot.get("inventory") if self.store and self.store.snapshot else None
        if lists is not None:
            if source.name not in lists:  # the snapshot was made from rows with no such list
                return SourceStatus()
            part = lists.pop(source.name)
            if part is not None:
                saved_at, last_success, rows = part
                restored = restore_snapshot(source, rows, fed, self.base_dir, stores=self.stores)
                if restored is not None:
                    log.info("inventory source %s: %d account(s) restored from the state "
                             "file's snapshot (list of %s)", source.name,
                             len(restored.accounts), time.ctime(saved_at))
                    return SourceStatus(accepted=restored, last_success=last_success)
        kept = saved.load_list(self.store, source.name) if self.store is not None else None
        if kept is None:
            return SourceStatus()
        restored, remade = restore(source, kept.rows, fed, self.base_dir,
                                   stores=self.stores, forms=kept.forms, keys=kept.keys)
        if remade and self.store is not None:
            saved.save_forms(self.store, source.name, remade)
        log.info("inventory source %s: %d account(s) restored from the state file (list of "
                 "%s)", source.name, len(restored.accounts), time.ctime(kept.saved))
        return SourceStatus(accepted=restored, last_success=kept.last_success)

    def accounts(self, static: set[Key]) -> tuple[list[Account], int]:
        """Every source's accounts, duplicates left out (and recorded on each source's
        status); with the number of duplicates."""
        merged: dict[Key, Account] = {}
        owner: dict[Key, str] = {}
        count = 0
        for name in sorted(self.status):
            duplicates = []
            for key, account in self.status[name].accepted.accounts.items():
                label = "/".join(key)
                if key in static:
                    duplicates.append(f"{label}: the configuration file lists it too, and wins")
                elif key in merged:
                    duplicates.append(f"{label}: inventory source {owner[key]} lists it too, "
                                      f"and wins (the first by name)")
                else:
                    merged[key], owner[key] = account, name
            if duplicates and duplicates != self.status[name].duplicates:
                log.warning("inventory source %s: %d account(s) provided elsewhere too, "
                            "skipped here; first: %s", name, len(duplicates), duplicates[0])
            self.status[name].duplicates = duplicates
            count += len(duplicates)
        return list(merged.values()), count

    # --- the loops ------------------------------------------------------------------------

    def start(self, on_change: Callable[[], object]) -> None:
        """Start (or, after a reload, reconcile) one loop per source; ``on_change`` is called
        after a refresh changed a source's list (and awaited, if it returns an awaitable)."""
        self._on_change = on_change
        self.loops.reconcile(self.sources, self._loop)

    async def stop(self) -> None:
        await self.loops.stop()
        self._on_change = None

    async def close(self) -> None:
        await asyncio.gather(*(source.close() for source in self.sources.values()),
                             return_exceptions=True)

    async def _loop(self, name: str) -> None:
        while name in self.sources:
            started = self.monotonic()
            try:
                if await self.refresh(name) and self._on_change is not None:
                    applied = self._on_change()
                    if inspect.isawaitable(applied):
                        await applied
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the state file cannot be written: try again next round
                log.exception("inventory source %s: the refresh failed", name)
            source = self.sources.get(name)
            if source is None:
                return
            await asyncio.sleep(max(0.0, source.interval - (self.monotonic() - started)))

    async def refresh_all(self) -> bool:
        """One refresh of every source, now (``channel-agent inventory``, tests)."""
        results = await asyncio.gather(*(self.refresh(name) for name in list(self.sources)))
        return any(results)

    async def refresh(self, name: str) -> bool:
        """One refresh; True when the source's list changed."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            source, status = self.sources[name], self.status[name]
            started = self.monotonic()
            try:
                # not wait_for, which in Python 3.11 may lose a cancel (tests/test_stop_in_time.py)
                async with asyncio.timeout(source.timeout + HARD_TIMEOUT_GRACE):
                    rows = await source.fetch()
                if rows is not None and not isinstance(rows, list | tuple):
                    raise TypeError(f"fetch() returned a {type(rows).__name__}, not a list")
            except TimeoutError:
                return self._failed(name, InventoryError(
                    "timeout", f"no answer within {source.timeout:g}s"), started)
            except InventoryError as exc:
                return self._failed(name, exc, started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("inventory source %s (type %s) raised %s: %s", name, source.type,
                          type(exc).__name__, redact(str(exc)))
                return self._failed(name, InventoryError(
                    "plugin_error", f"the source type raised {type(exc).__name__}"), started)
            if status.held is None and (rows is None or not status.revalidate and
                                        status.accepted.made_from(rows)):
                outcome = None  # the same answer as last time: nothing to do
            else:
                answer = status.held.rows if rows is None and status.held else rows
                assert answer is not None
                fed = {c: self.channels[c] for c in source.channels if c in self.channels}
                outcome = await asyncio.to_thread(
                    evaluate, source, status.accepted, answer, fed, self.base_dir, self.clock(),
                    status.held, status.revalidate, stores=self.stores)
            status.duration = self.monotonic() - started
            return self._succeeded(name, outcome)

    def _failed(self, name: str, error: InventoryError, started: float) -> bool:
        status = self.status[name]
        status.duration = self.monotonic() - started
        status.failures += 1
        message = redact(str(error))
        if status.up is not False or status.error != message:
            log.warning("inventory source %s failed (%s): %s; its last good list of %d "
                        "account(s) is kept", name, error.reason, message,
                        len(status.accepted.accounts))
        status.up, status.error = False, message
        return False

    def _succeeded(self, name: str, outcome: Outcome | None) -> bool:
        status = self.status[name]
        now = self.clock()
        if status.up is False:
            log.info("inventory source %s works again", name)
        status.up, status.error, status.last_success = True, "", now
        if outcome is None:
            self._save(name, None, now)
            return False
        self._report(name, status, outcome)
        status.problems = outcome.problems
        status.held = outcome.held
        if outcome.new is None:
            self._save(name, None, now)
            return False
        status.revalidate = False
        status.accepted = outcome.new
        self._save(name, outcome, now)
        if outcome.changes:
            log.info("inventory source %s: %d account(s); added %d, removed %d, changed %d",
                     name, len(outcome.new.accounts), outcome.added, outcome.removed,
                     outcome.changed)
        return outcome.changes

    def _save(self, name: str, outcome: Outcome | None, now: float) -> None:
        if self.store is None:
            return
        if outcome is None or not (outcome.write or outcome.forget):
            saved.record_success(self.store, name, now)
        else:
            saved.save_changes(self.store, name, outcome.write, outcome.forget, now,
                               outcome.forms)

    def _report(self, name: str, status: SourceStatus, outcome: Outcome) -> None:
        if outcome.problems and [str(p) for p in outcome.problems] != \
                [str(p) for p in status.problems]:
            log.warning("inventory source %s: %d row(s) skipped", name, len(outcome.problems))
            for problem in outcome.problems[:LOGGED_PROBLEMS]:
                log.warning("%s", problem)
        held = outcome.held
        if held is not None and status.held is None:
            source = self.sources[name]
            log.warning("inventory source %s: the new list would remove %d of %d account(s) "
                        "(more than max_removal %g%%); held until the same list has been seen "
                        "for %gs", name, held.removing, held.of, source.max_removal * 100,
                        source.removal_hold)
        elif held is None and status.held is not None and outcome.new is not None:
            log.warning("inventory source %s: the held removal applies now", name)


def with_discovered(loaded: Config, discovered: list[Account]) -> Config:
    """``loaded`` with the ``discovered`` accounts and their data sets (each channel's
    ``datasets``, which discovered accounts get)."""
    return drain(with_discovered_steps(loaded, discovered))


def with_discovered_steps(loaded: Config, discovered: list[Account]) -> Steps[Config]:
    """:func:`with_discovered` in steps (:mod:`agent.steps`)."""
    declared = {channel: list(datasets.items())
                for channel, datasets in loaded.channel_datasets.items() if datasets}
    datasets = list(loaded.datasets)
    add = datasets.append
    for n, a in enumerate(discovered, 1):  # 100,000 data sets at 50,000 accounts
        for name, (source, max_age) in declared.get(a.channel, ()):
            add(Dataset(a.channel, a.name, a.region, name, source, max_age))
        if n % steps.STEP == 0:
            yield
    return dataclasses.replace(loaded, discovered=discovered, datasets=datasets)

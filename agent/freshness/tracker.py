"""Every configured data set with the newest data time known for it, held in memory.

Heartbeats and polled sources write here (and through to the state file); metrics, the status
API and the landing page read from here. A data set with no value yet has no entry in
``values``: it is "no data yet", never 0 and never infinitely old.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent import steps
from agent.checks.sharding import Shard, account_key, owner
from agent.config.durations import format_duration
from agent.config.loader import Config
from agent.freshness.heartbeat import HeartbeatRejected, parse_heartbeat
from agent.freshness.source import Dataset, FreshnessSource
from agent.freshness.timestamps import iso
from agent.steps import Steps, drain
from agent.storage.freshness import DataFreshness
from agent.storage.state import StateStore

NO_DATA = "no data yet"


@dataclass
class DatasetPlan:
    """What :meth:`FreshnessTracker.adopt` puts in place (made by its ``prepare``)."""

    datasets: dict[tuple[str, str, str], Dataset]
    by_account: dict[tuple[str, str], list[Dataset]]
    accounts: set[tuple[str, str]]  # configured, this shard's or not
    channels: set[str]
    shard: Shard
    sources: dict[str, FreshnessSource]


class FreshnessTracker:
    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.datasets: dict[tuple[str, str, str], Dataset] = {}
        self.sources: dict[str, FreshnessSource] = {}
        self.values: dict[tuple[str, str, str], DataFreshness] = {}
        # polled source name -> whether its last round worked (absent before the first)
        self.source_up: dict[str, bool] = {}
        # data sets per account, in the order of the configuration
        self.by_account: dict[tuple[str, str], list[Dataset]] = {}
        # bumped when the data sets are replaced (a reload); watchers then start over
        self.generation = 0
        self._watchers: list[set[tuple[str, str]]] = []
        self._accounts: set[tuple[str, str]] = set()  # configured, this shard's or not
        self._channels: set[str] = set()
        self._shard = Shard()
        self._restored = store.load_freshness()

    def configure(self, config: Config) -> None:
        """Adopt the data sets of ``config`` whose accounts this replica's shard owns, and the
        sources; values of other data sets are dropped from memory (so they leave no series),
        restored ones kept."""
        self.adopt(drain(self.prepare(config)))

    def prepare(self, config: Config) -> Steps[DatasetPlan]:
        """:meth:`configure`'s work, in steps (:mod:`agent.steps`), changing nothing seen:
        what :meth:`adopt` then puts in place at once."""
        shard = config.agent.shard
        # 100,000 data sets at 50,000 accounts: the keys made from the fields directly, and
        # with one shard (the usual) no channel/account key to hash for each
        declared = config.datasets
        datasets: dict[tuple[str, str, str], Dataset] = {}
        for start in range(0, len(declared), steps.STEP):
            part = declared[start:start + steps.STEP]
            if shard.count == 1:
                datasets.update({(d.channel, d.account, d.name): d for d in part})
            else:
                datasets.update({d.key: d for d in part
                                 if shard.owns(account_key(d.channel, d.account))})
            yield
        by_account: dict[tuple[str, str], list[Dataset]] = {}
        for n, dataset in enumerate(datasets.values(), 1):
            key = (dataset.channel, dataset.account)
            listed = by_account.get(key)
            if listed is None:
                by_account[key] = [dataset]
            else:
                listed.append(dataset)
            if n % steps.STEP == 0:
                yield
        accounts = {(account.channel, account.name) for account in config.accounts()}
        return DatasetPlan(datasets, by_account, accounts, set(config.channels), shard,
                           dict(config.freshness_sources))

    def adopt(self, plan: DatasetPlan) -> None:
        """Put a :meth:`prepare`'s plan in place, with the values known now (heartbeats may
        have come since it was made)."""
        self.datasets = datasets = plan.datasets
        self._shard = plan.shard
        self.sources = plan.sources
        self._accounts = plan.accounts
        self._channels = plan.channels
        self.by_account = plan.by_account
        known = {**self._restored, **self.values} if self.values else self._restored
        self.values = {key: known[key] for key in datasets if key in known}
        self.source_up = {name: up for name, up in self.source_up.items() if name in self.sources}
        self.generation += 1

    def watch(self) -> set[tuple[str, str]]:
        """A set that collects the account key of every data set whose value changes from now
        on; the caller empties it when it has dealt with them."""
        keys: set[tuple[str, str]] = set()
        self._watchers.append(keys)
        return keys

    def _changed(self, dataset: Dataset) -> None:
        for keys in self._watchers:
            keys.add(dataset.account_key)

    def restore(self, values: Mapping[tuple[str, str, str], DataFreshness]) -> None:
        """Take saved values (e.g. another process's state file) for configured data sets."""
        for key, value in values.items():
            dataset = self.datasets.get(key)
            if dataset is not None:
                self.values[key] = value
                self._changed(dataset)

    def datasets_of(self, source: str) -> list[Dataset]:
        return [dataset for dataset in self.datasets.values() if dataset.source == source]

    def record(self, dataset: Dataset, last_updated: float, forward_only: bool = False) -> None:
        """Store the newest data time of ``dataset``. ``forward_only`` ignores a time older
        than the one known from the same source (a late heartbeat)."""
        self._record_many([(dataset, last_updated)], forward_only)

    def _record_many(self, times: list[tuple[Dataset, float]], forward_only: bool) -> None:
        """:meth:`record` for several data sets, written to the state file in one
        transaction, then taken in memory (a failed write changes nothing)."""
        new: dict[tuple[str, str, str], tuple[Dataset, DataFreshness]] = {}
        recorded = self.clock()
        for dataset, last_updated in times:
            current = new[dataset.key][1] if dataset.key in new else self.values.get(dataset.key)
            if current is not None and current.source == dataset.source and (
                current.last_updated == last_updated
                or (forward_only and current.last_updated > last_updated)
            ):
                continue
            new[dataset.key] = dataset, DataFreshness(
                channel=dataset.channel, account=dataset.account, dataset=dataset.name,
                last_updated=last_updated, source=dataset.source, recorded=recorded)
        if not new:
            return
        self.store.save_freshness_many([value for _, value in new.values()])
        for key, (dataset, value) in new.items():
            self.values[key] = value
            self._changed(dataset)

    def find(self, channel: str, account: str, dataset: str) -> Dataset:
        """The data set, or :class:`HeartbeatRejected` (404) naming the field that matches
        nothing here (an account of another shard names the replica to ask)."""
        if channel not in self._channels:
            raise HeartbeatRejected(404, "channel",
                                    f"field 'channel': no channel '{channel}' is configured")
        if (channel, account) not in self._accounts:
            raise HeartbeatRejected(404, "account", f"field 'account': channel {channel} has "
                                                    f"no account '{account}'")
        if self._shard.count > 1:  # one shard (the usual) owns every account: no key to make
            key = account_key(channel, account)
            if not self._shard.owns(key):
                raise HeartbeatRejected(
                    404, "account", f"field 'account': {key} is watched by the replica of "
                                    f"shard {owner(key, self._shard.count)}/{self._shard.count}; "
                                    f"this one is {self._shard}")
        found = self.datasets.get((channel, account, dataset))
        if found is None:
            raise HeartbeatRejected(404, "dataset", f"field 'dataset': account "
                                                    f"{account_key(channel, account)} has no "
                                                    f"data set '{dataset}'")
        return found

    def heartbeat(self, body: Mapping[str, Any]) -> Dataset:
        """Validate and store a heartbeat; :class:`HeartbeatRejected` stores nothing."""
        dataset, last_updated = parse_heartbeat(body, self.find, self.sources, self.clock())
        self.record(dataset, last_updated, forward_only=True)
        return dataset

    def heartbeats(self, bodies: list[Any]) -> list[tuple[int, HeartbeatRejected]]:
        """Validate and store each heartbeat on its own, as :meth:`heartbeat` does; return
        the refused ones (which stored nothing) with their index."""
        refused: list[tuple[int, HeartbeatRejected]] = []
        accepted: list[tuple[Dataset, float]] = []
        now = self.clock()
        for i, body in enumerate(bodies):
            try:
                if not isinstance(body, Mapping):
                    raise HeartbeatRejected(400, None, "a heartbeat must be a JSON object")
                accepted.append(parse_heartbeat(body, self.find, self.sources, now))
            except HeartbeatRejected as exc:
                refused.append((i, exc))
        self._record_many(accepted, forward_only=True)
        return refused

    def account_datasets(self, account: tuple[str, str]) -> list[dict[str, Any]]:
        """Each data set of one account as plain data (status API, CLI, landing page)."""
        now = self.clock()
        return [self._status(dataset, now) for dataset in self.by_account.get(account, [])]

    def _status(self, dataset: Dataset, now: float) -> dict[str, Any]:
        value = self.values.get(dataset.key)
        age = None if value is None else max(0.0, now - value.last_updated)
        source = self.sources.get(dataset.source)
        return {
            "dataset": dataset.name,
            "source": dataset.source,
            "source_type": source.type if source is not None else None,
            "source_up": self.source_up.get(dataset.source),
            "state": freshness_word(age, dataset.max_age),
            "last_updated": iso(value.last_updated) if value else None,
            "age_seconds": None if age is None else round(age),
            "age": None if age is None else human_age(age),
            "max_age_seconds": dataset.max_age,
            "max_age": format_duration(dataset.max_age),
        }


def human_age(age: float) -> str:
    """Whole seconds under an hour, whole minutes above: "42s", "3h12m", "2d4h"."""
    return format_duration(round(age) if age < 3600 else round(age / 60) * 60)


def freshness_word(age: float | None, max_age: float) -> str:
    """fresh / stale (older than max_age) / no data yet."""
    if age is None:
        return NO_DATA
    return "stale" if age > max_age else "fresh"

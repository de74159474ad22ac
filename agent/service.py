"""The running agent: configuration, state, metrics, scheduler and web server wired together."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent import __version__
from agent.channel import Account, Channel
from agent.checks.ratelimit import RateLimitedTransport
from agent.checks.scheduler import HARD_TIMEOUT_GRACE, Scheduler, fractions, offset
from agent.checks.sharding import account_key, owner
from agent.checks.transport import AiohttpTransport, ChannelClient
from agent.config.loader import Config, ConfigError
from agent.freshness.metrics import FreshnessMetrics
from agent.freshness.poller import FreshnessPoller
from agent.freshness.timestamps import iso
from agent.freshness.tracker import FreshnessTracker
from agent.inventory.metrics import InventoryCollector
from agent.inventory.runner import InventoryRunner, with_discovered_steps
from agent.metrics.collector import AgentMetrics
from agent.plugins import Plugins
from agent.secrets.metrics import StoreMetrics
from agent.secrets.registry import store_refs
from agent.secrets.writeback import WriteBack
from agent.status import account_status, channel_status, source_status
from agent.steps import Steps, drain, stepped
from agent.storage import snapshot as restore_snapshot
from agent.storage.fleet import Fleet
from agent.storage.state import StateStore

log = logging.getLogger(__name__)


@dataclass
class HttpOptions:
    """How the agent reaches channel APIs; tests and benchmarks inject a transport."""

    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class SourceStatus:
    """A source the agent reads (freshness now; account inventories too): is it answering?"""

    kind: str  # "freshness" or "inventory"
    name: str
    type: str
    up: bool | None  # None before its first round

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "type": self.type, "up": self.up}


@dataclass
class ReloadOutcome:
    """What a configuration reload did; ``problems`` when the new file was rejected."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # "channel/account"
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class AgentService:
    def __init__(self, config: Config, plugins: Plugins, http: HttpOptions | None = None,
                 loader: Callable[[], Config] | None = None) -> None:
        self.plugins = plugins
        self.http_options = http or HttpOptions()
        self.loader = loader  # re-reads the configuration for reload(); None: nothing to re-read
        self.started_at = time.time()
        self.ready = False
        self.store = StateStore(config.agent.state_path)
        # what follows restores from the snapshot of the last clean stop, if there is one
        self.store.snapshot = restore_snapshot.load(self.store)
        # the configuration as loaded; self.config adds the accounts inventory sources found
        self.loaded = config
        self.inventory = InventoryRunner(self.store)
        self.inventory.configure(config.inventory_sources, _classes(config), config.base_dir,
                               stores=config.secret_stores)
        self.duplicates = 0
        config = self.config = self._with_inventory(config)
        self.fleet = Fleet(self.store)
        self.fleet.configure(config)
        self.metrics = AgentMetrics(self.fleet, config.channels)
        self.metrics.check_interval.set(config.agent.check_interval)
        self.metrics.config_reload_successful.set(1)
        self.metrics.config_reload_success_time.set(self.started_at)
        self.store.on_write_failure = self.metrics.state_write_failures.inc
        self.freshness = FreshnessTracker(self.store)
        self.freshness.configure(config)
        self.store.snapshot = None  # restored: from now on every load reads the rows
        self.freshness_metrics = FreshnessMetrics(self.freshness, self.metrics.registry)
        self.poller = FreshnessPoller(self.freshness, self.freshness_metrics)
        self.metrics.registry.register(InventoryCollector(self.inventory))
        self._rate_limits: dict[str, RateLimitedTransport] = {}
        self.http = {name: self._client(name, channel)
                     for name, channel in config.channels.items()}
        self.store_metrics = StoreMetrics(self.metrics.registry)
        self.writeback = WriteBack(config.secret_stores, self.store_metrics)
        self._use_stores(config)
        self.scheduler = Scheduler(self.fleet, config.channels, self.metrics, config.agent,
                                   self.http, writeback=self.writeback)
        self._reload_lock = asyncio.Lock()
        self._closing: set[asyncio.Task] = set()  # clients of removed channels, closing

    def _client(self, name: str, channel: Channel) -> httpx.AsyncClient:
        """The channel's client: aiohttp underneath (or the injected transport), rate-limited
        per host."""
        inner = self.http_options.transport or AiohttpTransport(
            max_connections=self.config.agent.max_concurrency)
        limited = self._rate_limits[name] = RateLimitedTransport(
            inner, **_limits(channel),
            host_metrics=lambda host: self.metrics.host_metrics(name, host))
        return ChannelClient(transport=limited,
                             headers={"User-Agent": f"channel-health-agent/{__version__}"})

    def _use_stores(self, config: Config) -> None:
        """Report the stores' metrics here, and read ahead in this replica's check order."""
        stores = config.secret_stores
        stores.bind(self.store_metrics)
        self.writeback.stores = stores
        if not stores.stores:  # nothing to read ahead: no need to order the fleet
            return
        interval = config.agent.check_interval
        ordered = sorted(self.fleet.accounts.values(), key=lambda a: offset(a, interval))
        stores.plan(ref for account in ordered for ref in store_refs(account.settings))

    async def start(self) -> None:
        self.scheduler.start()
        self.poller.start()
        self.inventory.start(self.apply_inventory_stepped)
        self.ready = True

    def _with_inventory(self, loaded: Config) -> Config:
        """``loaded`` plus the accounts the inventory sources found (and their data sets:
        the channel's ``datasets``)."""
        return drain(self._with_inventory_steps(loaded))

    def _with_inventory_steps(self, loaded: Config) -> Steps[Config]:
        if not loaded.inventory_sources:
            return loaded
        static = {account.key for account in loaded.accounts()}
        discovered, self.duplicates = self.inventory.accounts(static)
        yield
        return (yield from with_discovered_steps(loaded, discovered))

    def apply_inventory(self) -> ReloadOutcome:
        """An inventory source's list changed: new accounts start (each at its offset in the
        check interval, so thousands do not start at once), removed ones stop and leave no
        series, changed ones are checked again soon; the others are untouched."""
        return drain(self._apply_inventory())

    async def apply_inventory_stepped(self) -> ReloadOutcome:
        """:meth:`apply_inventory` with the event loop served between its steps (what the
        inventory's loops call): the new fleet and its data sets are made beside the ones in
        use (a first list of 50,000 accounts is a second or two of work), then put in place
        in one callback, so a scrape, a heartbeat or a page sees the old fleet or the new
        one, never a mix. Not beside a reload (the same lock)."""
        async with self._reload_lock:
            return await stepped(self._apply_inventory())

    def _apply_inventory(self) -> Steps[ReloadOutcome]:
        config = yield from self._with_inventory_steps(self.loaded)
        fleet = yield from self.fleet.prepare(config)
        datasets = yield from self.freshness.prepare(config)
        made = yield from fractions(fleet.accounts, skip=self.fleet.accounts)
        outcome = _difference(self.fleet.accounts, fleet.accounts)
        yield
        # from here on one callback: the fleet, its data sets and the schedule change together
        self.config = config
        self.fleet.adopt(fleet)
        self._use_stores(config)
        self.freshness.adopt(datasets)
        self.scheduler.reconfigure(config.channels, config.agent, made)
        if self.ready:
            self.poller.start()
        self.scheduler.recheck([tuple(label.split("/", 1)) for label in outcome.changed],
                               within=min(config.agent.check_interval, RECHECK_WITHIN))
        log.info("inventory applied: %d account(s) here; added %d, removed %d, changed %d",
                 len(self.fleet.accounts), len(outcome.added), len(outcome.removed),
                 len(outcome.changed))
        return outcome

    async def stop(self, snapshot: bool = True) -> None:
        """Stop everything and close the state file, writing the restore snapshot first
        (``snapshot``: False for a start that failed, which has nothing to hand on)."""
        self.ready = False
        await self.scheduler.stop()
        await self.poller.stop()
        await self.inventory.stop()
        await self.inventory.close()
        for task in self._closing:
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await asyncio.gather(*(client.aclose() for client in self.http.values()))
        await asyncio.gather(*(source.close() for source in self.config.freshness_sources.values()))
        await self.writeback.stop()
        await self.config.secret_stores.close()
        if snapshot:
            self._write_snapshot()
        self.store.close()

    def _write_snapshot(self) -> None:
        """What the next start restores, in one blob (agent.storage.snapshot): written when
        nothing else writes any more. A failure costs the next start its speed, nothing else."""
        if str(self.store.path) == ":memory:":  # nothing starts from it again
            return
        started = time.monotonic()
        try:
            size = restore_snapshot.write(self.store)
        except sqlite3.Error as exc:
            log.warning("the restore snapshot was not written (%s): the next start restores "
                        "from the state file's rows", exc)
            return
        log.info("restore snapshot written: %.1f MB in %.2f s", size / 1e6,
                 time.monotonic() - started)

    async def reload(self) -> ReloadOutcome:
        """Re-read the configuration (SIGHUP, ``POST /-/reload``).

        Accounts added start being checked, removed ones stop and leave no series, changed
        ones use their new settings from their next check. A configuration with problems
        changes nothing: every problem is logged and
        ``channel_agent_config_last_reload_successful`` becomes 0.
        """
        async with self._reload_lock:
            if self.loader is None:
                return self._reload_failed(["this agent has no configuration file to re-read"])
            try:
                config = await asyncio.to_thread(self.loader)
            except ConfigError as exc:
                return self._reload_failed([str(problem) for problem in exc.problems])
            outcome = self._adopt(config)
            self.metrics.config_reload_successful.set(1)
            self.metrics.config_reload_success_time.set(time.time())
            for warning in outcome.warnings:
                log.warning("reload: %s", warning)
            log.info("configuration %s reloaded: %d account(s); added %d, removed %d, "
                     "changed %d", config.source, len(self.fleet.accounts), len(outcome.added),
                     len(outcome.removed), len(outcome.changed))
            return outcome

    def _reload_failed(self, problems: list[str]) -> ReloadOutcome:
        self.metrics.config_reload_successful.set(0)
        log.error("configuration reload failed, the previous configuration stays in force "
                  "(%d problem(s))", len(problems))
        for problem in problems:
            log.error("reload: %s", problem)
        return ReloadOutcome(ok=False, problems=problems)

    def _adopt(self, config: Config) -> ReloadOutcome:
        old = self.config
        warnings = [
            f"agent.{key} changed: the agent goes on with the old value until it restarts"
            for key in ("listen_address", "state_path")
            if getattr(old.agent, key) != getattr(config.agent, key)
        ]
        for name, channel in config.channels.items():
            if name in old.channels:
                channel.carry_over(old.channels[name])
        before = dict(self.fleet.accounts)
        config.secret_stores.carry_over(old.secret_stores)
        self.loaded = config
        replaced_sources = self.inventory.configure(config.inventory_sources, _classes(config),
                                                    config.base_dir, stores=config.secret_stores)
        config = self.config = self._with_inventory(config)
        self.fleet.configure(config)
        self._use_stores(config)
        self.metrics.set_channels(config.channels)
        self.metrics.check_interval.set(config.agent.check_interval)
        self.freshness.configure(config)
        removed_clients = [self.http.pop(name) for name in list(self.http)
                           if name not in config.channels]
        for name, channel in config.channels.items():
            if name not in self.http:
                self.http[name] = self._client(name, channel)
            else:
                self._rate_limits[name].configure(**_limits(channel))
        for name in set(self._rate_limits) - set(config.channels):
            del self._rate_limits[name]
        self.scheduler.reconfigure(config.channels, config.agent)
        if self.ready:
            self.poller.start()
        # A check or a poll round started before may still use what the old configuration
        # made (a removed channel's client, every old freshness source): close those after
        # the longest such a thing may take.
        closers = [client.aclose for client in removed_clients]
        closers += [source.close for source in old.freshness_sources.values()]
        closers.append(old.secret_stores.close)
        closers += [source.close for source in replaced_sources]
        if closers:
            grace = max([old.agent.check_timeout,
                         *(s.timeout for s in old.freshness_sources.values()),
                         *(s.timeout for s in replaced_sources)])
            task = asyncio.create_task(_close_later(closers, grace + HARD_TIMEOUT_GRACE))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        outcome = _difference(before, self.fleet.accounts)
        outcome.warnings = warnings
        return outcome

    def inventory_status(self) -> dict[str, Any]:
        """Each inventory source: its state, its accounts, what it skipped (no secret)."""
        return {name: source_status(self.inventory, name) for name in self.inventory.sources}

    def find_account(self, channel: str, name: str) -> Account | None:
        return self.fleet.accounts.get((channel, name))

    def not_here(self, channel: str, name: str) -> str:
        """Why this replica has no such account: not configured, or another shard's."""
        shard = self.fleet.shard
        if not any(a.key == (channel, name) for a in self.config.accounts()):
            return "unknown channel/account"
        return (f"checked by the replica of shard {owner(account_key(channel, name), shard.count)}"
                f"/{shard.count}; this one is {shard}")

    def source_statuses(self) -> list[SourceStatus]:
        """Every source the summary reports, up or down."""
        freshness = [SourceStatus("freshness", name, source.type,
                                  self.freshness.source_up.get(name))
                     for name, source in self.config.freshness_sources.items()]
        inventory = [SourceStatus("inventory", name, source.type,
                                  self.inventory.status[name].up)
                     for name, source in self.inventory.sources.items()]
        return freshness + inventory

    def status_header(self) -> dict[str, Any]:
        """The agent, plugins, channels and sources: what /api/v1/status shows above the
        accounts."""
        return {
            "agent": {
                "version": __version__,
                "started_at": iso(self.started_at),
                "ready": self.ready,
                "config": self.config.source,
                "check_interval_seconds": self.config.agent.check_interval,
                "shard": str(self.fleet.shard),
                "accounts_configured": self.fleet.configured,
            },
            "plugins": {
                "channels": {name: origin for name, origin in self.plugins.origins.items()},
                "errors": [{"plugin": e.plugin, "error": e.error} for e in self.plugins.errors],
            },
            "channels": {name: channel_status(channel, self.fleet.client_valid.get(name))
                         for name, channel in self.config.channels.items()},
            "freshness_sources": {
                name: {"type": source.type, "up": self.freshness.source_up.get(name)}
                for name, source in self.config.freshness_sources.items()
            },
            "secret_stores": {
                name: {"type": store.type, "mode": store.mode,
                       "up": self.store_metrics.last_up.get(name)}
                for name, store in self.config.secret_stores.stores.items()
            },
            "inventory_sources": self.inventory_status(),
        }

    def account_doc(self, key: tuple[str, str]) -> dict[str, Any]:
        """One account of this replica as :func:`agent.status.account_status` describes it."""
        account = self.fleet.accounts[key]
        return account_status(self.fleet.states[key], self.config.channels.get(account.channel),
                              self.freshness.account_datasets(key), account)

    def status(self) -> dict[str, Any]:
        """The header and every account, in one document (in-process callers and tests; the
        HTTP API pages the accounts: agent.web.api)."""
        return {**self.status_header(),
                "accounts": [self.account_doc(key) for key in self.fleet.accounts]}


def _limits(channel: Channel) -> dict[str, Any]:
    """The channel's settings for its RateLimitedTransport
    (agent.channel.ChannelSettings)."""
    return {"rate": float(channel.settings.get("max_requests_per_second") or 0),
            "pause_on_429": bool(channel.settings.get("pause_host_on_429", True)),
            # not called at all for a channel that reads no rate-limit headers
            "backpressure": None if type(channel).backpressure is Channel.backpressure
            else channel.backpressure}


async def _close_later(closers: list[Callable[[], Awaitable[Any]]], delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await asyncio.gather(*(close() for close in closers), return_exceptions=True)


def _label(key: tuple[str, str]) -> str:
    return "/".join(key)


RECHECK_WITHIN = 60.0  # changed inventory accounts are checked again within this (or sooner)


def _classes(config: Config) -> dict[str, type[Channel]]:
    return {name: type(channel) for name, channel in config.channels.items()}


def _difference(before: dict[tuple[str, str], Account],
                after: dict[tuple[str, str], Account]) -> ReloadOutcome:
    return ReloadOutcome(
        ok=True,
        added=sorted(_label(key) for key in after.keys() - before.keys()),
        removed=sorted(_label(key) for key in before.keys() - after.keys()),
        changed=sorted(_label(key) for key in after.keys() & before.keys()
                       if after[key] != before[key]),
    )

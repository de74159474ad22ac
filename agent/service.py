"""The running agent: configuration, state, metrics, scheduler and web server wired together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent import __version__
from agent.channel import Account, Channel
from agent.config import Config, ConfigError
from agent.fleet import Fleet
from agent.metrics import AgentMetrics
from agent.plugins import Plugins
from agent.scheduler import HARD_TIMEOUT_GRACE, Scheduler
from agent.state import AccountState, StateStore

log = logging.getLogger(__name__)


@dataclass
class HttpOptions:
    """How the agent reaches channel APIs; tests and benchmarks inject a transport."""

    transport: httpx.AsyncBaseTransport | None = None


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
        self.config = config
        self.plugins = plugins
        self.http_options = http or HttpOptions()
        self.loader = loader  # re-reads the configuration for reload(); None: nothing to re-read
        self.started_at = time.time()
        self.ready = False
        self.store = StateStore(config.agent.state_path)
        self.fleet = Fleet(self.store)
        self.fleet.configure(config)
        self.metrics = AgentMetrics(self.fleet, config.channels)
        self.metrics.config_reload_successful.set(1)
        self.metrics.config_reload_success_time.set(self.started_at)
        self.http = {name: self._client() for name in config.channels}
        self.scheduler = Scheduler(self.fleet, config.channels, self.metrics, config.agent,
                                   self.http)
        self._reload_lock = asyncio.Lock()
        self._closing: set[asyncio.Task] = set()  # clients of removed channels, closing

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.config.agent.max_concurrency,
                              max_keepalive_connections=self.config.agent.max_concurrency)
        return httpx.AsyncClient(transport=self.http_options.transport, limits=limits,
                                 headers={"User-Agent": f"channel-health-agent/{__version__}"})

    async def start(self) -> None:
        self.scheduler.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.scheduler.stop()
        for task in self._closing:
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await asyncio.gather(*(client.aclose() for client in self.http.values()))
        self.store.close()

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
        self.config = config
        self.fleet.configure(config)
        self.metrics.set_channels(config.channels)
        removed_clients = [self.http.pop(name) for name in list(self.http)
                           if name not in config.channels]
        for name in config.channels:
            if name not in self.http:
                self.http[name] = self._client()
        self.scheduler.reconfigure(config.channels, config.agent)
        if removed_clients:
            # a check of a removed channel may still be running: close after its hard timeout
            grace = old.agent.check_timeout + HARD_TIMEOUT_GRACE
            task = asyncio.create_task(_close_later(removed_clients, grace))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        after = self.fleet.accounts
        return ReloadOutcome(
            ok=True,
            added=sorted(_label(key) for key in after.keys() - before.keys()),
            removed=sorted(_label(key) for key in before.keys() - after.keys()),
            changed=sorted(_label(key) for key in after.keys() & before.keys()
                           if after[key] != before[key]),
            warnings=warnings,
        )

    def find_account(self, channel: str, name: str) -> Account | None:
        return self.fleet.accounts.get((channel, name))

    def status(self) -> dict[str, Any]:
        """The JSON document behind /api/v1/status and the landing page."""
        return {
            "agent": {
                "version": __version__,
                "started_at": _iso(self.started_at),
                "ready": self.ready,
                "config": self.config.source,
                "check_interval_seconds": self.config.agent.check_interval,
            },
            "plugins": {
                "channels": {name: origin for name, origin in self.plugins.origins.items()},
                "errors": [{"plugin": e.plugin, "error": e.error} for e in self.plugins.errors],
            },
            "channels": {
                name: {"client_valid": self.fleet.client_valid.get(name)}
                for name in self.config.channels
            },
            "accounts": [
                account_status(state, self.config.channels.get(account.channel))
                for account, state in self.fleet
            ],
        }


def account_status(state: AccountState, channel: Channel | None) -> dict[str, Any]:
    """One account's state as plain, secret-free data (status API, CLI ``--json``)."""
    max_age = channel.refresh_token_max_age() if channel else 0.0
    expiry = state.refresh_issued + max_age if state.refresh_issued and max_age > 0 else None
    return {
        "channel": state.channel,
        "account": state.account,
        "region": state.region,
        "state": state_word(state),
        "valid": state.valid,
        "check_success": state.check_success,
        "reason": state.reason,
        "detail": state.detail,
        "last_check": _iso(state.last_check),
        "last_valid": _iso(state.last_valid),
        "refresh_token_fingerprint": state.refresh_fingerprint,
        "refresh_token_issued": _iso(state.refresh_issued),
        "refresh_token_expiry": _iso(expiry),
        "access_token_expiry": _iso(state.access_expires),
        "profiles": state.profiles,
        "reconnected": _iso(state.reconnected),
    }


def state_word(state: AccountState) -> str:
    """valid / invalid / unverified (last check inconclusive) / pending (never checked)."""
    if state.check_success is None:
        return "pending"
    if not state.check_success:
        return "unverified"
    return "valid" if state.valid else "invalid"


async def _close_later(clients: list[httpx.AsyncClient], delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)


def _label(key: tuple[str, str]) -> str:
    return "/".join(key)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

"""Prometheus metrics, rendered from the fleet's cached state: a scrape never calls a channel.

Per-account series come from :class:`FleetCollector`, which walks the fleet at collect time,
so an account removed from the configuration leaves no series behind. Process-wide counters
and the check-duration histogram are ordinary prometheus_client metrics in the same registry.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.channel import Account, Channel
from agent.checks.ratelimit import HostMetrics
from agent.metrics.incremental import REGION, Age, IncrementalCollector, Sample
from agent.storage.fleet import Fleet
from agent.storage.state import AccountState

ACCOUNT_LABELS = ["channel", "account", REGION]
CACHED = " Served from the last scheduled check; a scrape never calls the channel's API."

# A counter's `_created` sample (its creation time) doubles the series of every counter
# family and nobody reads it; process-wide, as prometheus_client offers it.
disable_created_metrics()


# For INFO_FAMILY a sample's labels are (name, value) pairs after channel and account.
INFO_FAMILY = "account_info"


class FleetCollector(IncrementalCollector):
    """Turns the fleet's per-account state into metric families, e.g.::

        channel_credential_valid{channel="amazon_ads",account="acme-us",region="na"} 1.0
        channel_credential_failure_reason{...,reason="invalid_grant"} 1.0
        channel_token_age_seconds{...,token="refresh"} 86400.0

    The per-account samples come from :meth:`account_samples`, which :meth:`collect` and the
    incremental renderer of :mod:`agent.metrics.exposition` share, so both always agree.
    """

    live_families = frozenset({"token_age"})
    free_families = frozenset({INFO_FAMILY})
    scrape_families_keys = ("client_valid", "client_secret_expiry", "accounts", "build_info",
                            "shard_info")

    def __init__(self, fleet: Fleet, channels: dict[str, Channel]) -> None:
        self.fleet = fleet
        self.channels = channels
        # accounts per channel, for the fleet's generation and channels it was counted for
        self._counted: tuple[tuple[int, int] | None, dict[str, int]] = (None, {})

    def families(self) -> dict[str, Metric]:
        return _families()

    def clock(self) -> float:
        return self.fleet.clock()

    def generation(self) -> tuple[int, int]:
        return (self.fleet.generation, id(self.channels))

    def keys(self) -> list[tuple[str, str]]:
        return list(self.fleet.accounts)

    def watch(self) -> set[tuple[str, str]]:
        return self.fleet.watch()

    def labels(self, key: tuple[str, str]) -> tuple[str, str, str]:
        account = self.fleet.accounts[key]
        return (account.channel, account.name, account.region)

    def samples(self, key: tuple[str, str], now: float) -> Iterator[Sample]:
        return self.account_samples(self.fleet.accounts[key], self.fleet.states[key], now)

    def changes_at(self, key: tuple[str, str], now: float) -> float:
        state = self.fleet.states[key]
        return state.access_expires if _holds_access_token(state, now) else math.inf

    def free_labels(self, labels: tuple[str, ...], extra: tuple) -> dict[str, str]:
        return info_labels(labels[0], labels[1], extra)

    def account_samples(self, account: Account, state: AccountState, now: float,
                        ) -> Iterator[Sample]:
        """One account's samples. Apart from Age values they depend on ``state`` only, until
        :meth:`changes_at` (a held access token expiring)."""
        if state.valid is not None:
            yield "valid", (), float(state.valid)
        if state.check_success is not None:
            yield "check_success", (), float(state.check_success)
        channel = self.channels.get(account.channel)
        if state.reason is not None:
            reason = channel.reason_table().get(state.reason) if channel else None
            # a reason restored from the state file that the channel no longer declares
            cls = reason.cls if reason else "transient"
            yield "failure_reason", (state.reason, cls), 1.0
        if state.valid is False and state.rejection is not None:
            rejection = channel.reason_table().get(state.rejection) if channel else None
            # not declared any more: count it as a dead credential, which pages
            yield "rejection", (state.rejection, rejection.cls if rejection else "credential"), 1.0
        if state.last_check is not None:
            yield "last_check", (), state.last_check
        if state.last_valid is not None:
            yield "last_valid", (), state.last_valid
        yield "failures", (), float(state.failures_total)
        if state.refresh_issued is not None:
            yield "token_age", ("refresh",), Age(state.refresh_issued)
            yield "refresh_issued", (), state.refresh_issued
            expiry = channel.refresh_token_expiry(account.name, state.refresh_issued) \
                if channel and not state.rejected else None
            if expiry is not None:
                yield "refresh_expiry", (), expiry
        if _holds_access_token(state, now):
            yield "token_age", ("access",), Age(state.access_issued)
            yield "access_expiry", (), state.access_expires
        kind = channel.target_kind if channel else ""
        if kind:
            for target, accessible in sorted(state.targets.items()):
                yield "target", (kind, target), float(accessible)
            if state.targets_reached is not None:
                yield "targets_reached", (kind,), float(state.targets_reached)
        if state.reconnected is not None:
            yield "reconnected", (), state.reconnected
        yield INFO_FAMILY, tuple(sorted(account.labels.items())), 1.0

    def scrape_families(self) -> Iterator[Metric]:
        """The few families about the whole fleet (per channel, build info)."""
        g = _families()
        if self._counted[0] != (self.fleet.generation, id(self.channels)):
            per_channel: dict[str, int] = dict.fromkeys(self.channels, 0)
            for account in self.fleet.accounts.values():
                per_channel[account.channel] = per_channel.get(account.channel, 0) + 1
            self._counted = ((self.fleet.generation, id(self.channels)), per_channel)
        per_channel = self._counted[1]
        for name, channel in sorted(self.channels.items()):
            if channel.application_client is None:
                continue
            valid = self.fleet.client_valid.get(name)
            if valid is not None:
                g["client_valid"].add_metric([name], float(valid))
            expiry = channel.client_secret_expiry()
            if expiry is not None:
                g["client_secret_expiry"].add_metric([name], expiry)
        for channel, count in sorted(per_channel.items()):
            g["accounts"].add_metric([channel], float(count))
        g["build_info"].add_metric([__version__], 1.0)
        g["shard_info"].add_metric([str(self.fleet.shard.index), str(self.fleet.shard.count)], 1.0)
        yield from (g[key] for key in self.scrape_families_keys)
        for channel in self.channels.values():  # a channel's own fleet-wide series
            yield from channel.metrics()


def info_labels(channel: str, account: str, labels: tuple[tuple[str, str], ...],
                ) -> dict[str, str]:
    """The labels of an account's channel_account_info sample."""
    merged = dict(labels)
    merged["channel"], merged["account"] = channel, account
    return merged


def _holds_access_token(state: AccountState, now: float) -> bool:
    return state.access_issued is not None and (state.access_expires or 0) > now



def _families() -> dict[str, Metric]:
    def gauge(name: str, doc: str, extra: tuple[str, ...] = (), labels=None) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels or [*ACCOUNT_LABELS, *extra])

    return {
        "valid": gauge(
            "channel_credential_valid",
            "1 if the credential worked at the last conclusive check, 0 if the channel rejected "
            "it; absent until a check reaches a conclusion; transient failures never change it."
            + CACHED,
        ),
        "check_success": gauge(
            "channel_credential_check_success",
            "1 if the last check reached a conclusion, 0 if it ended transiently "
            "(throttled, timeout, network, server error, bad response)." + CACHED,
        ),
        "failure_reason": gauge(
            "channel_credential_failure_reason",
            "1 with the reason of the last check's failure, conclusive or not, and its class "
            "(credential, permission, application, transient); absent while the last check "
            "succeeded." + CACHED,
            ("reason", "class"),
        ),
        "rejection": gauge(
            "channel_credential_rejection_reason",
            "1 with the reason of the last conclusive rejection and its class (credential, "
            "permission, application), one series per account; present while "
            "channel_credential_valid is 0, whatever later transient checks say." + CACHED,
            ("reason", "class"),
        ),
        "last_check": gauge(
            "channel_credential_last_check_timestamp_seconds",
            "Unix time the last check of this credential ended.",
        ),
        "last_valid": gauge(
            "channel_credential_last_valid_timestamp_seconds",
            "Unix time this credential last worked; survives agent restarts.",
        ),
        "failures": CounterMetricFamily(
            "channel_credential_check_failures",
            "Checks of this credential that failed, conclusively or transiently, "
            "since the agent started.",
            labels=ACCOUNT_LABELS,
        ),
        "token_age": gauge(
            "channel_token_age_seconds",
            "Age of the refresh token (since granted or, where unknown, first seen) and of the "
            "access token held in memory.",
            ("token",),
        ),
        "refresh_issued": gauge(
            "channel_refresh_token_issued_timestamp_seconds",
            "Unix time the refresh token was granted (by a reconnect) or, where unknown, "
            "first seen by the agent.",
        ),
        "refresh_expiry": gauge(
            "channel_refresh_token_expiry_timestamp_seconds",
            "Unix time the refresh token (the account's long-lived credential) is expected to "
            "expire: by default issued plus the channel's refresh_token_max_age; absent when "
            "it never expires and while the credential is invalid (a reconnect brings a new "
            "token and a new expiry).",
        ),
        "access_expiry": gauge(
            "channel_access_token_expiry_timestamp_seconds",
            "Unix time the access token held in memory expires.",
        ),
        "target": gauge(
            "channel_target_accessible",
            "1 if the consent reaches this target (target_kind: an Ads profile, an SP-API "
            "marketplace, a scope...), 0 if it does not; per expected target, or per target "
            "seen when none are expected." + CACHED,
            ("target_kind", "target"),
        ),
        "targets_reached": gauge(
            "channel_targets_reached",
            "How many targets (target_kind) the consent reaches in all; 0 is a consent that is "
            "of no use to the platform." + CACHED,
            ("target_kind",),
        ),
        "reconnected": gauge(
            "channel_credential_reconnected_timestamp_seconds",
            "Unix time the account was last reconnected (re-authorised) with channel-agent "
            "reconnect.",
        ),
        INFO_FAMILY: gauge(
            "channel_account_info",
            "Always 1; the account's labels (from its inventory source or the configuration), "
            "to join onto other series: * on (channel, account) group_left(merchant) "
            "channel_account_info.",
            labels=["channel", "account"],
        ),
        "client_valid": gauge(
            "channel_client_valid",
            "1 if the channel accepted the application's client id and secret at the last "
            "token refresh, 0 if it rejected them (every account of the client is down).",
            labels=["channel"],
        ),
        "client_secret_expiry": gauge(
            "channel_client_secret_expiry_timestamp_seconds",
            "Unix time the application's client secret expires (its configured last rotation "
            "plus the provider's secret lifetime); only for channels whose secrets expire.",
            labels=["channel"],
        ),
        "accounts": gauge(
            "channel_agent_accounts",
            "Accounts this agent checks, per channel: those of its shard when sharded.",
            labels=["channel"],
        ),
        "build_info": gauge(
            "channel_agent_build_info", "Always 1; the agent's version.", labels=["version"]
        ),
        "shard_info": gauge(
            "channel_agent_shard_info",
            "Always 1; this replica checks the accounts of shard index (0-based) of count.",
            labels=["index", "count"],
        ),
    }


class AgentRegistry(CollectorRegistry):
    """A CollectorRegistry that lists its collectors in registration order."""

    def __init__(self) -> None:
        super().__init__()
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self.collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self.collectors.remove(collector)


class AgentMetrics:
    """The agent's registry: the fleet collector plus process-wide counters."""

    def __init__(self, fleet: Fleet, channels: dict[str, Channel],
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or AgentRegistry()
        self.fleet_collector = FleetCollector(fleet, channels)
        self.registry.register(self.fleet_collector)
        # process_start_time_seconds & co.: the ChannelAgentChecksStalled rule needs the uptime.
        ProcessCollector(registry=self.registry)
        self.check_interval = Gauge(
            "channel_agent_check_interval_seconds",
            "The configured agent.check_interval, so alert rules can tell a stalled check "
            "from a slow schedule.",
            registry=self.registry,
        )
        self.check_failures = Counter(
            "channel_check_failures",
            "Failed checks by channel and reason (the core set documented in the README, "
            "plus the channel's own reasons).",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "channel_agent_api_requests",
            "Requests the agent made to a channel's API, by endpoint and HTTP status code "
            "(or timeout/network when no response came).",
            ["channel", "endpoint", "code"],
            registry=self.registry,
        )
        self.check_duration = Histogram(
            "channel_agent_check_duration_seconds",
            "Time one account's check took, retries included.",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.config_reload_successful = Gauge(
            "channel_agent_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded, 0 if the new file was rejected "
            "and the previous configuration is still in force.",
            registry=self.registry,
        )
        self.config_reload_success_time = Gauge(
            "channel_agent_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load or reload.",
            registry=self.registry,
        )
        self.exposition_age_lag = Gauge(
            "channel_agent_exposition_age_lag_seconds",
            "Whole seconds by which the oldest age (channel_token_age_seconds, "
            "channel_data_staleness_seconds) in this /metrics response is behind the "
            "scrape's clock: 0-1 while the agent has the CPU to render every age each "
            "second, more when it falls behind (at most 10). Changes of state show "
            "whatever the lag.",
            registry=self.registry,
        )
        self.missed_schedule = Counter(
            "channel_agent_checks_missed_schedule",
            "Scheduled checks skipped because the account's previous check ended after the "
            "next was due: the agent cannot keep up with check_interval (concurrency, rate "
            "limit or slow answers).",
            ["channel"],
            registry=self.registry,
        )
        self.state_write_failures = Counter(
            "channel_agent_state_write_failures",
            "Commits to the state file that failed (disk full, I/O error, the file locked by "
            "another process). Their writes are kept and retried with the next commit; "
            "heartbeats are not acknowledged until stored.",
            registry=self.registry,
        )
        self.ratelimit_waiting = Gauge(
            "channel_agent_ratelimit_waiting_requests",
            "Requests waiting now for their turn at a host (max_requests_per_second, or a "
            "pause after a 429).",
            ["channel", "host"],
            registry=self.registry,
        )
        self.ratelimit_waited = Counter(
            "channel_agent_ratelimit_wait_seconds",
            "Seconds requests spent waiting for their turn at a host.",
            ["channel", "host"],
            registry=self.registry,
        )
        self.ratelimit_pauses = Counter(
            "channel_agent_ratelimit_pauses",
            "Pauses of every request to a host after it answered 429 (Too Many Requests).",
            ["channel", "host"],
            registry=self.registry,
        )
        self._hosts: set[tuple[str, str]] = set()  # (channel, host) with rate-limiter series
        self._reasons: dict[str, tuple[str, ...]] = {}  # channel -> reasons with a series
        self.set_channels(channels)

    def host_metrics(self, channel: str, host: str) -> HostMetrics:
        """The rate-limiter series of one host of a channel (created at its first request)."""
        self._hosts.add((channel, host))
        return HostMetrics(waiting=self.ratelimit_waiting.labels(channel, host),
                           waited=self.ratelimit_waited.labels(channel, host),
                           pauses=self.ratelimit_pauses.labels(channel, host))

    def set_channels(self, channels: dict[str, Channel]) -> None:
        """Per-channel series for ``channels``; those of channels no longer configured go."""
        for name in set(self._reasons) - set(channels):
            for reason in self._reasons.pop(name):
                with contextlib.suppress(KeyError):
                    self.check_failures.remove(name, reason)
            for metric in (self.check_duration, self.missed_schedule):
                with contextlib.suppress(KeyError):
                    metric.remove(name)
        for channel, host in [h for h in self._hosts if h[0] not in channels]:
            self._hosts.discard((channel, host))
            for metric in (self.ratelimit_waiting, self.ratelimit_waited, self.ratelimit_pauses):
                with contextlib.suppress(KeyError):
                    metric.remove(channel, host)
        self.fleet_collector.channels = channels
        for name, channel in channels.items():
            reasons = tuple(channel.reason_table())  # the core's and the channel's own
            for reason in set(self._reasons.get(name, ())) - set(reasons):
                with contextlib.suppress(KeyError):
                    self.check_failures.remove(name, reason)
            self._reasons[name] = reasons
            for reason in reasons:
                self.check_failures.labels(name, reason)
            self.check_duration.labels(name)
            self.missed_schedule.labels(name)

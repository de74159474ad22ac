"""Admin API version health, per channel: what the app asks for, what Shopify serves, and
what Shopify says is deprecated. A few series per channel, never one per shop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from channel_agent_shopify.shopify_api import version_retirement

MAX_REASONS = 10  # distinct deprecation reasons kept (the most recent)
FORGET_AFTER = 86400.0  # a served version or reason not seen for a day is dropped


class VersionHealth:
    def __init__(self, channel: str, configured: str, retirement: float | None,
                 warning: float, clock: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.configured = configured
        self.retirement = retirement
        self.warning = warning
        self.clock = clock
        self.served: dict[str, float] = {}  # version -> last seen
        self.deprecations: dict[str, float] = {}  # reason -> last seen

    def saw(self, served: str | None, deprecated_reason: str | None) -> None:
        now = self.clock()
        if served:
            self.served[served[:32]] = now
        if deprecated_reason:
            reason = " ".join(deprecated_reason.split())[:200]
            self.deprecations[reason] = now
            if len(self.deprecations) > MAX_REASONS:
                oldest = min(self.deprecations, key=self.deprecations.__getitem__)
                del self.deprecations[oldest]

    def take_over(self, previous: VersionHealth) -> None:
        self.served.update(previous.served)
        self.deprecations.update(previous.deprecations)

    def metrics(self) -> Iterator[Metric]:
        now = self.clock()
        for seen in (self.served, self.deprecations):
            for key in [k for k, at in seen.items() if now - at > FORGET_AFTER]:
                del seen[key]
        info = GaugeMetricFamily(
            "channel_api_version_info",
            "Always 1: the API version the channel is configured to call and the version the "
            "provider said it served (they differ when a retired version fell forward); served "
            "is empty until an answer said.",
            labels=["channel", "configured", "served"])
        for served in sorted(self.served) or [""]:
            info.add_metric([self.channel, self.configured, served], 1.0)
        yield info
        if self.retirement is not None:
            retire = GaugeMetricFamily(
                "channel_api_version_retirement_timestamp_seconds",
                "Unix time the configured API version stops being supported (release plus "
                "the channel's api_version_support_months, or its api_version_retirement).",
                labels=["channel", "version"])
            retire.add_metric([self.channel, self.configured], self.retirement)
            yield retire
            warn = GaugeMetricFamily(
                "channel_api_version_retirement_warning_seconds",
                "How long before the API version's retirement the channel wants to be warned "
                "(api_version_warning); alert rules compare with it.",
                labels=["channel"])
            warn.add_metric([self.channel], self.warning)
            yield warn
        deprecated = GaugeMetricFamily(
            "channel_api_deprecated_call_last_seen_timestamp_seconds",
            "Unix time the provider last flagged a call of the agent as deprecated, by the "
            "reason it gave (X-Shopify-API-Deprecated-Reason); seen within the last day.",
            labels=["channel", "reason"])
        for reason, at in sorted(self.deprecations.items()):
            deprecated.add_metric([self.channel, reason], at)
        yield deprecated


def retirement_of(version: str, support_months: int, override: float | None) -> float | None:
    return override if override is not None else version_retirement(version, support_months)

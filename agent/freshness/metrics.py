"""Data freshness metrics, from the tracker: a scrape never queries a source, and staleness is
computed from the newest known data time when Prometheus asks."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.freshness.source import SOURCE_ERROR_REASONS, FreshnessSource
from agent.freshness.tracker import FreshnessTracker
from agent.metrics.incremental import Age, IncrementalCollector, Sample

DATASET_LABELS = ["channel", "account", "region", "dataset", "source"]


class FreshnessCollector(IncrementalCollector):
    """Per data set and per polled source, e.g.::

        channel_data_last_updated_timestamp_seconds{channel="amazon_ads",account="acme-us",
            region="na",dataset="sp_campaigns_daily",source="warehouse"} 1.7646e+09
        channel_data_staleness_seconds{...} 7200.0
        channel_data_staleness_threshold_seconds{...} 129600.0
        channel_freshness_source_up{source="warehouse"} 1.0

    One block of samples per account (its data sets), re-rendered by the exposition only when
    a heartbeat or a source result changes one of them; staleness is an :class:`Age`.
    """

    live_families = frozenset({"staleness"})
    scrape_families_keys = ("up",)

    def __init__(self, tracker: FreshnessTracker) -> None:
        self.tracker = tracker

    def families(self) -> dict[str, Metric]:
        return _families()

    def clock(self) -> float:
        return self.tracker.clock()

    def generation(self) -> int:
        return self.tracker.generation

    def keys(self) -> list[tuple[str, str]]:
        return list(self.tracker.by_account)

    def watch(self) -> set[tuple[str, str]]:
        return self.tracker.watch()

    def labels(self, key: tuple[str, str]) -> tuple[str, str, str]:
        first = self.tracker.by_account[key][0]
        return (first.channel, first.account, first.region)

    def samples(self, key: tuple[str, str], now: float) -> Iterator[Sample]:
        values = self.tracker.values
        for dataset in self.tracker.by_account[key]:
            extra = (dataset.name, dataset.source)
            yield "threshold", extra, dataset.max_age
            value = values.get(dataset.key)
            if value is not None:  # no value yet: no staleness, neither 0 nor infinity
                yield "last_updated", extra, value.last_updated
                yield "staleness", extra, Age(value.last_updated)

    def scrape_families(self) -> Iterator[Metric]:
        up = _families()["up"]
        for source, is_up in sorted(self.tracker.source_up.items()):
            up.add_metric([source], float(is_up))
        yield up


def _families() -> dict[str, Metric]:
    return {
        "last_updated": GaugeMetricFamily(
            "channel_data_last_updated_timestamp_seconds",
            "Unix time of the newest data known for this data set (from its freshness source); "
            "absent until the source reported one. Kept while the source fails.",
            labels=DATASET_LABELS),
        "staleness": GaugeMetricFamily(
            "channel_data_staleness_seconds",
            "Now minus channel_data_last_updated_timestamp_seconds, computed at scrape time; "
            "absent while the data set has no value yet.",
            labels=DATASET_LABELS),
        "threshold": GaugeMetricFamily(
            "channel_data_staleness_threshold_seconds",
            "The data set's configured max_age: older data is stale.",
            labels=DATASET_LABELS),
        "up": GaugeMetricFamily(
            "channel_freshness_source_up",
            "1 if the polled freshness source's last round of queries worked, 0 if any failed "
            "(its data sets keep their last known values); absent before the first round and "
            "for heartbeat sources.",
            labels=["source"]),
    }


class FreshnessMetrics:
    """The freshness collector plus the source error counter, in the agent's registry."""

    def __init__(self, tracker: FreshnessTracker, registry: CollectorRegistry) -> None:
        registry.register(FreshnessCollector(tracker))
        self.errors = Counter(
            "channel_freshness_source_errors",
            "Failed queries of a polled freshness source, by reason (the fixed set documented "
            "in the README: timeout, unavailable, query_error, bad_value, plugin_error).",
            ["source", "reason"],
            registry=registry,
        )
        self.set_sources(tracker.sources)

    def set_sources(self, sources: dict[str, FreshnessSource]) -> None:
        for name, source in sources.items():
            if not source.push:
                for reason in SOURCE_ERROR_REASONS:
                    self.errors.labels(name, reason)

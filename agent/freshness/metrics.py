"""Data freshness metrics, rendered at scrape time from the tracker: a scrape never queries a
source, and staleness is computed from the newest known data time when Prometheus asks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.freshness.source import SOURCE_ERROR_REASONS, FreshnessSource
from agent.freshness.tracker import FreshnessTracker

DATASET_LABELS = ["channel", "account", "region", "dataset", "source"]


class FreshnessCollector(Collector):
    """Per data set and per polled source, e.g.::

        channel_data_last_updated_timestamp_seconds{channel="amazon_ads",account="acme-us",
            region="na",dataset="sp_campaigns_daily",source="warehouse"} 1.7646e+09
        channel_data_staleness_seconds{...} 7200.0
        channel_data_staleness_threshold_seconds{...} 129600.0
        channel_freshness_source_up{source="warehouse"} 1.0
    """

    def __init__(self, tracker: FreshnessTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[Metric]:
        now = self.tracker.clock()
        families = _families()
        for key, dataset in self.tracker.datasets.items():
            labels = [dataset.channel, dataset.account, dataset.region, dataset.name,
                      dataset.source]
            samples = [("threshold", dataset.max_age)]
            value = self.tracker.values.get(key)
            if value is not None:  # no value yet: no staleness, neither 0 nor infinity
                samples += [("last_updated", value.last_updated),
                            ("staleness", max(0.0, now - value.last_updated))]
            for family, number in samples:
                families[family].add_metric(labels, number)
                if not dataset.region:  # a channel without regions: no region label
                    families[family].samples[-1].labels.pop("region")
        for source, up in sorted(self.tracker.source_up.items()):
            families["up"].add_metric([source], float(up))
        yield from families.values()

    def describe(self) -> Iterable[Metric]:
        return _families().values()


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

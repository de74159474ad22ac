"""The inventory's metrics: a few series per source, rendered at each scrape.

``channel_account_info`` (one series per account, with its labels) is part of the fleet's
cached families instead (agent.metrics.collector), so it costs nothing per scrape.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.inventory.diff import SourceList
from agent.inventory.runner import InventoryRunner


class InventoryCollector(Collector):
    def __init__(self, runner: InventoryRunner) -> None:
        self.runner = runner
        # per source: its accepted list (weakly), the channels counted for, the counts
        self._counted: dict[str, tuple[weakref.ref[SourceList], tuple[str, ...],
                                       dict[str, int]]] = {}

    def collect(self) -> Iterator[Metric]:
        f = _families()
        for name, status in sorted(self.runner.status.items()):
            source = self.runner.sources.get(name)
            if source is None:
                continue
            if status.up is not None:
                f["up"].add_metric([name], float(status.up))
            per_channel = self._per_channel(name, tuple(source.channels), status.accepted)
            for channel, count in sorted(per_channel.items()):
                f["accounts"].add_metric([name, channel], float(count))
            if status.last_success is not None:
                f["last_success"].add_metric([name], status.last_success)
            if status.duration is not None:
                f["duration"].add_metric([name], status.duration)
            f["interval"].add_metric([name], source.interval)
            f["failures"].add_metric([name], float(status.failures))
            f["invalid"].add_metric([name], float(len(status.problems)))
            f["duplicates"].add_metric([name], float(len(status.duplicates)))
            f["held"].add_metric([name], float(status.held is not None))
        yield from f.values()

    def _per_channel(self, name: str, channels: tuple[str, ...], accepted: SourceList,
                     ) -> dict[str, int]:
        """The accounts of a source's list per channel, counted once per list: a refresh
        replaces the list, never changes it, and counting 10,000 accounts at every scrape
        was half of a scrape's CPU during a check cycle."""
        kept = self._counted.get(name)
        if kept is not None and kept[0]() is accepted and kept[1] == channels:
            return kept[2]
        per_channel = dict.fromkeys(channels, 0)
        for channel, _ in accepted.accounts:
            per_channel[channel] = per_channel.get(channel, 0) + 1
        self._counted[name] = (weakref.ref(accepted), channels, per_channel)
        return per_channel

    def describe(self) -> Iterable[Metric]:
        return _families().values()


def _families() -> dict[str, Metric]:
    def gauge(name: str, doc: str, labels: tuple[str, ...] = ("source",)) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=list(labels))

    return {
        "up": gauge("channel_inventory_source_up",
                    "1 if the inventory source's last refresh worked, 0 if it failed (its "
                    "last good list is kept)."),
        "accounts": gauge("channel_inventory_accounts",
                          "Accounts in the inventory source's current list, per channel "
                          "(every replica's, before sharding).", ("source", "channel")),
        "last_success": gauge("channel_inventory_last_success_timestamp_seconds",
                              "Unix time of the inventory source's last successful refresh "
                              "(kept across restarts)."),
        "duration": gauge("channel_inventory_refresh_duration_seconds",
                          "How long the inventory source's last refresh took."),
        "interval": gauge("channel_inventory_refresh_interval_seconds",
                          "The inventory source's configured interval, so alert rules can "
                          "tell a stale source from a slow schedule."),
        "failures": CounterMetricFamily("channel_inventory_refresh_failures",
                                        "Refreshes of the inventory source that failed "
                                        "since the agent started.", labels=["source"]),
        "invalid": gauge("channel_inventory_invalid_rows",
                         "Rows of the inventory source's last answer that were skipped "
                         "(invalid, or a second row of one account)."),
        "duplicates": gauge("channel_inventory_duplicate_accounts",
                            "Accounts of the inventory source that another source (first by "
                            "name) or the configuration file provides too; skipped here."),
        "held": gauge("channel_inventory_removal_held",
                      "1 while a list removing more than max_removal of the source's accounts "
                      "is held (for removal_hold); 0 otherwise."),
    }

"""The interface of a collector whose samples the exposition caches per account.

A collector with one block of samples per key (an account) subclasses
:class:`IncrementalCollector`. :mod:`agent.metrics.exposition` then formats a key's samples
only when the key changes (:meth:`IncrementalCollector.watch`) and keeps them compressed, and
:meth:`IncrementalCollector.collect` gives ``generate_latest`` the same content from the same
methods, so both always agree. The fleet's credential series
(:class:`~agent.metrics.collector.FleetCollector`) and the data-freshness series
(:class:`~agent.freshness.metrics.FreshnessCollector`) are the two today.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator
from typing import NamedTuple

from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class Age(NamedTuple):
    """A sample value that is the time since ``since``, computed when the sample is rendered.

    Per-account samples are rendered once and cached; an ``Age`` is the one kind of value that
    changes without the state changing, so it is kept apart and evaluated at every scrape.
    (A NamedTuple, not a frozen dataclass: made for every age at every render of an account,
    and a tuple is made three times faster.)
    """

    since: float

    @property
    def start(self) -> int:
        """The whole second ``since`` falls in."""
        return math.floor(self.since)

    def at(self, now: float) -> float:
        """Whole seconds from ``since``'s second to ``now``'s (never negative). Ages of tokens
        and data are hours and days; whole seconds render four times faster than floats,
        and the exposition renders every age at every scrape."""
        return float(max(0, math.floor(now) - self.start))


# An account of a channel without regions has region "": its series carry no region label.
REGION = "region"

# (family key, label values after the collector's leading labels, value)
Sample = tuple[str, tuple[str, ...], "float | Age"]


class IncrementalCollector(Collector):
    """Per-key samples plus a few families rendered whole at every scrape.

    Every family of :meth:`families` whose key is not in ``scrape_families_keys`` holds only
    per-key samples; their label names start with the values :meth:`labels` returns, followed
    by a sample's own label values; an empty ``region`` value leaves the label out. Families
    in ``live_families`` hold only :class:`Age` values, the others never.
    """

    live_families: frozenset[str] = frozenset()
    # families whose samples carry labels of their own choosing: :meth:`free_labels`
    free_families: frozenset[str] = frozenset()
    scrape_families_keys: tuple[str, ...] = ()

    def families(self) -> dict[str, Metric]:
        """Empty families, keyed and ordered as the samples refer to them."""
        raise NotImplementedError

    def clock(self) -> float:
        raise NotImplementedError

    def generation(self) -> Hashable:
        """Changes whenever the set of keys (or anything every key's samples depend on) is
        replaced; the exposition then starts over."""
        raise NotImplementedError

    def keys(self) -> list[Hashable]:
        raise NotImplementedError

    def watch(self) -> set[Hashable]:
        """A set that collects the key of every change from now on; the caller empties it."""
        raise NotImplementedError

    def labels(self, key: Hashable) -> tuple[str, ...]:
        """The leading label values of every sample of ``key``."""
        raise NotImplementedError

    def samples(self, key: Hashable, now: float) -> Iterator[Sample]:
        """The samples of ``key``. Apart from Age values they change only when ``key`` is
        reported by :meth:`watch`, or at :meth:`changes_at`."""
        raise NotImplementedError

    def free_labels(self, labels: tuple[str, ...], extra: tuple) -> dict[str, str]:
        """All labels of a sample of a ``free_families`` family, from the key's leading
        label values and the sample's own."""
        raise NotImplementedError

    def changes_at(self, key: Hashable, now: float) -> float:
        """When the samples of ``key`` will change by themselves (never, by default)."""
        return math.inf

    def scrape_families(self) -> Iterator[Metric]:
        """The families of ``scrape_families_keys``, current (rendered at every scrape)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        families = self.families()
        for key in self.keys():
            labels = self.labels(key)
            for family, extra, value in self.samples(key, now):
                if isinstance(value, Age):
                    value = value.at(now)
                metric = families[family]
                if family in self.free_families:
                    metric.add_sample(metric.name, self.free_labels(labels, extra), value)
                    continue
                metric.add_metric([*labels, *extra], value)
                if metric.samples[-1].labels.get(REGION) == "":
                    metric.samples[-1].labels.pop(REGION)
        yield from (family for key, family in families.items()
                    if key not in self.scrape_families_keys)
        yield from self.scrape_families()

    def describe(self) -> Iterable[Metric]:
        return self.families().values()

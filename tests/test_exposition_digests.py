"""An account marked changed is formatted only where its samples changed: per family, by a
digest of its labels and samples (agent.metrics.blockcache). Whatever changes, the exposition
still says what generate_latest says."""

from __future__ import annotations

import gzip
import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from agent.metrics import blockcache
from agent.metrics.blockcache import BLOCK
from agent.metrics.collector import AgentRegistry
from agent.metrics.exposition import Exposition
from agent.metrics.incremental import Age, IncrementalCollector
from tests.test_exposition import families

NOW = 1_700_000_000.0
KEYS = [f"k{i:02d}" for i in range(BLOCK + 4)]  # two blocks


class Toy(IncrementalCollector):
    """Per key: a plain value (family "one"), two labelled values (family "two", label
    ``kind``) and an age (family "age"), all set by the test."""

    live_families = frozenset({"age"})

    def __init__(self) -> None:
        self.now = NOW
        self.values = {key: {"one": 1.0, "two": {"x": 2.0, "y": 3.0}, "since": NOW - 60}
                       for key in KEYS}
        self.region = dict.fromkeys(KEYS, "eu")
        self.watchers: list[set] = []

    def set(self, key: str, **changes) -> None:
        self.values[key] |= changes
        for watcher in self.watchers:
            watcher.add(key)

    def families(self):
        labels = ["channel", "account", "region"]
        return {"one": GaugeMetricFamily("toy_one", "One.", labels=labels),
                "two": GaugeMetricFamily("toy_two", "Two.", labels=[*labels, "kind"]),
                "age": GaugeMetricFamily("toy_age_seconds", "Age.", labels=labels)}

    def clock(self):
        return self.now

    def generation(self):
        return 1

    def keys(self):
        return list(KEYS)

    def watch(self):
        self.watchers.append(set())
        return self.watchers[-1]

    def labels(self, key):
        return ("toy", key, self.region[key])

    def samples(self, key, now):
        values = self.values[key]
        yield "one", (), values["one"]
        for kind, value in sorted(values["two"].items()):
            yield "two", (kind,), value
        yield "age", (), Age(values["since"])


@pytest.fixture
def toy():
    registry = AgentRegistry()
    collector = Toy()
    registry.register(collector)
    exposition = Exposition(registry)
    exposition.render_gzip()
    return registry, collector, exposition


def assert_same(registry, exposition):
    expected = families(generate_latest(registry))
    assert families(gzip.decompress(exposition.render_gzip())) == expected
    assert families(exposition.render()) == expected


def test_a_family_that_changed_shows_beside_one_that_did_not(toy):
    registry, toy_collector, exposition = toy
    assert_same(registry, exposition)
    toy_collector.set("k03", one=5.0)  # "two" and the age of k03 stay
    assert_same(registry, exposition)
    toy_collector.set("k03", two={"x": 2.0, "y": 7.5})  # the second sample of "two" only
    assert_same(registry, exposition)
    toy_collector.set("k03", two={"x": 2.0})  # a sample goes, the others stay
    assert_same(registry, exposition)
    toy_collector.set("k03", since=NOW - 3600)  # the age only
    assert_same(registry, exposition)
    for key in KEYS[::3]:  # some accounts of both blocks, each one family
        toy_collector.set(key, one=toy_collector.values[key]["one"] + 1)
    assert_same(registry, exposition)


def test_new_labels_render_every_family_anew(toy):
    registry, toy_collector, exposition = toy
    toy_collector.region["k05"] = ""  # no region: the label goes from every sample
    toy_collector.set("k05")
    assert_same(registry, exposition)
    toy_collector.region["k05"] = "na"
    toy_collector.set("k05")
    assert_same(registry, exposition)


@pytest.mark.parametrize(("before", "after"), [
    # values whose hash() is another's: -1 and -2, the infinities and +-314159
    (-1.0, -2.0), (-2.0, -1.0), (314159.0, math.inf), (math.inf, 314159.0),
    (-314159.0, -math.inf), (-math.inf, -314159.0),
    (0.1, 0.1 + 2 ** -55), (1.0, 0.0),
])
def test_a_value_changed_to_one_with_a_colliding_hash_shows(toy, before, after):
    registry, toy_collector, exposition = toy
    for value in (before, after, before):
        toy_collector.set("k07", one=value, two={"x": value, "y": 3.0})
        assert_same(registry, exposition)


@pytest.mark.parametrize(("before", "after"), [(-1.0, -2.0), (-2.0, -1.0)])
def test_an_age_from_a_time_with_a_colliding_hash_shows(toy, before, after):
    registry, toy_collector, exposition = toy
    toy_collector.now = 100.0
    for since in (before, after, before):
        toy_collector.set("k08", since=since)
        assert_same(registry, exposition)


def test_an_account_marked_changed_with_the_same_samples_is_not_formatted(toy, monkeypatch):
    registry, toy_collector, exposition = toy
    formatted, compressed = [], []  # an account's labels are escaped when it is formatted
    escape_free, deflate = blockcache.escape_free, blockcache.deflate
    monkeypatch.setattr(blockcache, "escape_free", lambda labels: formatted.append(labels[1])
                        or escape_free(labels))
    monkeypatch.setattr(blockcache, "deflate", lambda text: compressed.append(text) or (
        deflate(text)))
    for key in KEYS:
        toy_collector.set(key)  # a check that changed nothing this collector shows
    exposition.invalidate()
    assert_same(registry, exposition)
    assert formatted == [] and compressed == []
    toy_collector.set("k01", one=9.0)
    assert_same(registry, exposition)
    assert formatted == ["k01"]
    assert len(compressed) == 1  # its block of "one"; "two" did not change
    assert b'toy_one{account="k01",channel="toy",region="eu"} 9.0' in compressed[0]

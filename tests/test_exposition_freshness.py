"""Freshness series on the cached /metrics path: same content as generate_latest, and a
heartbeat or a source result re-renders only its own account's block."""

from __future__ import annotations

import gzip

import pytest

from agent.freshness.metrics import FreshnessCollector
from agent.metrics.blockcache import BLOCK
from agent.metrics.collector import FleetCollector
from agent.metrics.exposition import Exposition
from tests.test_exposition import families
from tests.test_freshness import NOW, T, make_service

SOURCES = {"pipeline": {"type": "heartbeat"},
           "files": {"type": "file", "path": "{account}-{dataset}.json"}}
DATASETS = {"campaigns": {"source": "pipeline", "max_age": "36h"},
            "orders": {"source": "pipeline", "max_age": "1h"},
            "reports": {"source": "files", "max_age": "2h"}}
ACCOUNTS = [f"a{i:03d}" for i in range(BLOCK * 2 + 3)]  # three blocks


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world(tmp_path):
    service = make_service(tmp_path, SOURCES, DATASETS, ACCOUNTS)
    clock = Clock()
    service.freshness.clock = service.fleet.clock = clock
    yield service, clock, Exposition(service.metrics.registry)
    await service.stop()


def heartbeat(service, account, dataset, last_updated):
    service.freshness.heartbeat({"channel": "fake", "account": account, "dataset": dataset,
                                 "last_updated": last_updated})


def assert_same(service, exposition):
    from prometheus_client import generate_latest

    expected = families(generate_latest(service.metrics.registry))
    assert "channel_data_staleness_threshold_seconds" in expected
    assert families(exposition.render()) == expected
    assert families(gzip.decompress(exposition.render_gzip())) == expected


def collector(service, kind):
    return next(c for c in service.metrics.registry.collectors if isinstance(c, kind))


def rendered_keys(monkeypatch, target):
    """The keys whose samples the exposition formats from now on (the collector's own
    method, recorded)."""
    keys = []
    samples = target.samples

    def recording(key, now):
        keys.append(key)
        return samples(key, now)

    monkeypatch.setattr(target, "samples", recording)
    return keys


async def test_same_content_as_generate_latest_as_heartbeats_arrive(world):
    service, clock, exposition = world
    assert_same(service, exposition)  # thresholds only: no data yet
    heartbeat(service, "a000", "campaigns", T)
    heartbeat(service, ACCOUNTS[-1], "orders", T + 60)  # another block
    assert_same(service, exposition)
    clock.now += 1234.5678  # staleness moves on with no heartbeat
    assert_same(service, exposition)
    text = exposition.render().decode()
    assert ('channel_data_staleness_seconds{account="a000",channel="fake",dataset="campaigns",'
            f'region="na",source="pipeline"}} {int(NOW + 1234.5678 - T)}\n') in text  # seconds
    service.freshness.source_up["files"] = False  # a failed round shows at once
    assert b'channel_freshness_source_up{source="files"} 0.0' in exposition.render()
    assert_same(service, exposition)


async def test_a_heartbeat_re_renders_only_its_accounts_block(world, monkeypatch):
    service, clock, exposition = world
    exposition.render_gzip()
    freshness = rendered_keys(monkeypatch, collector(service, FreshnessCollector))
    fleet = rendered_keys(monkeypatch, collector(service, FleetCollector))
    heartbeat(service, "a005", "orders", T)
    exposition.render_gzip()
    assert freshness == [("fake", "a005")] and fleet == []
    freshness.clear()
    clock.now += 600  # time alone re-renders nothing: staleness is computed at the scrape
    exposition.render_gzip()
    assert freshness == []


async def test_a_source_result_re_renders_only_its_accounts_block(world, monkeypatch, tmp_path):
    service, clock, exposition = world
    exposition.render()
    keys = rendered_keys(monkeypatch, collector(service, FreshnessCollector))
    dataset = service.freshness.datasets[("fake", "a017", "reports")]
    service.freshness.record(dataset, T)  # what a poll round does with an answer
    assert (b'channel_data_last_updated_timestamp_seconds{account="a017",channel="fake",'
            b'dataset="reports",region="na",source="files"} 1795752000.0\n') in exposition.render()
    assert keys == [("fake", "a017")]


async def test_a_reload_that_drops_data_sets_drops_their_series(world, tmp_path):
    service, clock, exposition = world
    heartbeat(service, "a001", "orders", T)
    assert b'dataset="orders"' in exposition.render()
    smaller = make_service(tmp_path / "next", SOURCES, {"campaigns": DATASETS["campaigns"]},
                           ACCOUNTS)
    service.freshness.configure(smaller.config)
    await smaller.stop()
    assert b'dataset="orders"' not in exposition.render()
    assert_same(service, exposition)

"""POST /api/v1/freshness: heartbeats are stored; every bad one gets a 4xx and stores nothing."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.web.server import MAX_BODY, make_app
from tests.test_freshness import make_service

SOURCES = {
    "pipeline": {"type": "heartbeat"},
    "warehouse": {"type": "sql", "url": "sqlite:///warehouse.db", "query": "SELECT 1"},
}
DATASETS = {
    "sp_campaigns_daily": {"source": "pipeline", "max_age": "36h"},
    "orders": {"source": "warehouse", "max_age": "1h"},
}
GOOD = {"channel": "fake", "account": "a1", "dataset": "sp_campaigns_daily",
        "last_updated": "2026-11-27T04:00:00Z"}
LABELS = {"channel": "fake", "account": "a1", "region": "na", "dataset": "sp_campaigns_daily",
          "source": "pipeline"}


@pytest.fixture
async def agent(tmp_path):
    service = make_service(tmp_path, SOURCES, DATASETS)
    service.freshness.clock = time.time
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    yield service, client
    await client.close()
    await service.stop()


def last_updated(service):
    return service.metrics.registry.get_sample_value(
        "channel_data_last_updated_timestamp_seconds", LABELS)


async def test_a_heartbeat_is_stored_and_exported(agent):
    service, client = agent
    response = await client.post("/api/v1/freshness", json=GOOD)
    assert response.status == 204
    assert last_updated(service) == 1795752000.0
    assert service.store.load_freshness()[("fake", "a1", "sp_campaigns_daily")].source == (
        "pipeline")

    now = time.time()
    response = await client.post("/api/v1/freshness", json={**GOOD, "last_updated": now})
    assert response.status == 204 and last_updated(service) == now
    # a late heartbeat about older data does not move the data time backwards
    response = await client.post("/api/v1/freshness", json={**GOOD, "last_updated": now - 60})
    assert response.status == 204 and last_updated(service) == now


async def test_each_replica_takes_only_its_shards_data_sets(tmp_path):
    from agent.checks.sharding import account_key, owner

    accounts = [f"a{i}" for i in range(1, 9)]
    mine = [a for a in accounts if owner(account_key("fake", a), 2) == 0]
    theirs = [a for a in accounts if a not in mine]
    service = make_service(tmp_path, SOURCES, DATASETS, accounts, shard="0/2")
    assert {key[1] for key in service.freshness.datasets} == set(mine)
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    try:
        ok = await client.post("/api/v1/freshness", json={**GOOD, "account": mine[0]})
        assert ok.status == 204
        refused = await client.post("/api/v1/freshness", json={**GOOD, "account": theirs[0]})
        assert refused.status == 404
        error = await refused.json()
        assert error["field"] == "account" and "shard 1/2; this one is 0/2" in error["error"]
    finally:
        await client.close()
        await service.stop()
    assert [key[1] for key in service.freshness.values] == [mine[0]]


def without(field):
    return {k: v for k, v in GOOD.items() if k != field}


BAD = {
    "not JSON": ("{", 400, None),
    "a JSON list": ([GOOD], 400, None),
    "channel missing": (without("channel"), 400, "channel"),
    "channel not a string": ({**GOOD, "channel": 7}, 400, "channel"),
    "account empty": ({**GOOD, "account": ""}, 400, "account"),
    "dataset null": ({**GOOD, "dataset": None}, 400, "dataset"),
    "last_updated missing": (without("last_updated"), 400, "last_updated"),
    "last_updated not a time": ({**GOOD, "last_updated": "yesterday"}, 400, "last_updated"),
    "last_updated without offset": ({**GOOD, "last_updated": "2026-11-27T04:00:00"}, 400,
                                    "last_updated"),
    "last_updated boolean": ({**GOOD, "last_updated": True}, 400, "last_updated"),
    "last_updated null": ({**GOOD, "last_updated": None}, 400, "last_updated"),
    "last_updated object": ({**GOOD, "last_updated": {"t": 1}}, 400, "last_updated"),
    "last_updated NaN": ('{"channel": "fake", "account": "a1", "dataset": "sp_campaigns_daily",'
                         ' "last_updated": NaN}', 400, "last_updated"),
    "last_updated zero": ({**GOOD, "last_updated": 0}, 400, "last_updated"),
    "last_updated in milliseconds": ({**GOOD, "last_updated": time.time() * 1000}, 400,
                                     "last_updated"),
    "last_updated an hour ahead": ({**GOOD, "last_updated": time.time() + 3600}, 400,
                                   "last_updated"),
    "unknown field": ({**GOOD, "lastUpdated": 1}, 400, "lastUpdated"),
    "unknown channel": ({**GOOD, "channel": "walmart"}, 404, "channel"),
    "unknown account": ({**GOOD, "account": "a9"}, 404, "account"),
    "unknown dataset": ({**GOOD, "dataset": "sb_campaigns_daily"}, 404, "dataset"),
    "dataset from a polled source": ({**GOOD, "dataset": "orders"}, 409, "dataset"),
    "body over 64 KiB": ({**GOOD, "padding": "x" * MAX_BODY}, 413, None),
}


@pytest.mark.parametrize("case", BAD)
async def test_a_bad_heartbeat_is_refused_and_nothing_is_stored(agent, case):
    service, client = agent
    body, status, field = BAD[case]
    data = body if isinstance(body, str) else json.dumps(body)
    response = await client.post("/api/v1/freshness", data=data,
                                 headers={"Content-Type": "application/json"})
    assert response.status == status
    assert response.content_type == "application/json"
    error = await response.json()
    assert error["field"] == field and error["error"]
    if field is not None:
        assert f"field '{field}'" in error["error"]
    assert service.freshness.values == {}
    assert service.store.load_freshness() == {}
    assert last_updated(service) is None

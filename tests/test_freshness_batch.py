"""POST /api/v1/freshness/batch: each heartbeat validated as a single one and stored on its
own; a refused item stores nothing of itself and does not stop the others."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from agent.web.server import MAX_BATCH
from tests.test_freshness_api import GOOD, agent  # noqa: F401  (the fixture)


def stored(service):
    return {key: value.last_updated for key, value in service.store.load_freshness().items()}


async def test_a_batch_stores_every_heartbeat(agent):  # noqa: F811
    service, client = agent
    now = time.time()
    batch = [{**GOOD, "account": account, "last_updated": now - i}
             for i, account in enumerate(("a1", "a2"))]
    response = await client.post("/api/v1/freshness/batch", json={"heartbeats": batch})
    assert response.status == 200
    assert await response.json() == {"accepted": 2, "refused": []}
    assert stored(service) == {("fake", "a1", "sp_campaigns_daily"): now,
                               ("fake", "a2", "sp_campaigns_daily"): now - 1}
    value = service.metrics.registry.get_sample_value(
        "channel_data_last_updated_timestamp_seconds",
        {"channel": "fake", "account": "a2", "region": "na", "dataset": "sp_campaigns_daily",
         "source": "pipeline"})
    assert value == now - 1


async def test_refused_items_store_nothing_and_the_others_are_stored(agent):  # noqa: F811
    service, client = agent
    batch = [
        {**GOOD, "account": "nobody"},  # 404
        GOOD,  # fine
        {**GOOD, "account": "a2", "last_updated": "yesterday"},  # 400, nothing of it stored
        {**GOOD, "account": "a2", "dataset": "orders"},  # 409: a polled data set
        "not an object",
        {**GOOD, "account": "a2", "extra": 1},  # unknown field: the whole item refused
    ]
    response = await client.post("/api/v1/freshness/batch", json={"heartbeats": batch})
    assert response.status == 422
    answer = await response.json()
    assert answer["accepted"] == 1
    assert [(r["index"], r["status"], r["field"]) for r in answer["refused"]] == [
        (0, 404, "account"), (2, 400, "last_updated"), (3, 409, "dataset"), (4, 400, None),
        (5, 400, "extra")]
    assert "no account 'nobody'" in answer["refused"][0]["error"]
    assert list(stored(service)) == [("fake", "a1", "sp_campaigns_daily")]


async def test_a_malformed_batch_is_refused_whole(agent):  # noqa: F811
    service, client = agent
    for body, field in [({"heartbeats": []}, "heartbeats"), ({"heartbeats": GOOD}, "heartbeats"),
                        ({"heartbeats": [GOOD], "more": 1}, "more"), ({}, "heartbeats"),
                        ({"heartbeats": [GOOD] * (MAX_BATCH + 1)}, "heartbeats")]:
        response = await client.post("/api/v1/freshness/batch", json=body)
        assert response.status == 400, body
        assert (await response.json())["field"] == field
    assert stored(service) == {}


async def test_single_heartbeats_keep_their_64_kib_limit(agent):  # noqa: F811
    _, client = agent
    big = json.dumps({**GOOD, "dataset": "x" * 70_000})
    response = await client.post("/api/v1/freshness", data=big,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 413
    batch = json.dumps({"heartbeats": [GOOD] * 500})  # ~60 KB: fine as a batch ...
    response = await client.post("/api/v1/freshness/batch", data=batch)
    assert response.status == 200
    huge = json.dumps({"heartbeats": [{**GOOD, "dataset": "x" * 5_000_000}]})  # ... not 4 MiB
    response = await client.post("/api/v1/freshness/batch", data=huge)
    assert response.status == 413


async def test_mark_synced_posts_several_data_sets_as_one_batch(agent):  # noqa: F811
    service, client = agent
    url = str(client.make_url("/"))
    command = [Path(sys.executable).parent / "channel-agent", "mark-synced", "fake",
               "--account", "a1", "--dataset", "sp_campaigns_daily", "--dataset", "orders", "--at",
               "2026-11-27T04:00:00Z", "--url", url]
    done = await _run(command)
    assert done.returncode == 1
    assert "orders: field 'dataset': data set 'orders' of fake/a1 takes its freshness" in (
        done.stderr)
    assert list(stored(service)) == [("fake", "a1", "sp_campaigns_daily")]


async def _run(command):
    import asyncio

    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=60)

"""Freshness in the running core: the file source, polling rounds, metrics and state."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os

import pytest

from agent.config.loader import build_config
from agent.freshness import SourceError
from agent.freshness.timestamps import to_unix, zone
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel, FakePlugin

T = dt.datetime(2026, 11, 27, 4, 0, tzinfo=dt.UTC).timestamp()
NOW = T + 7200  # the tests' clock: two hours after the newest data


def make_service(tmp_path, sources, datasets, accounts=("a1", "a2"), **agent) -> AgentService:
    data = {
        "agent": {"state_path": str(tmp_path / "agent.db"), "check_interval": "1h",
                  "check_timeout": "1s", **agent},
        "freshness_sources": sources,
        "channels": {"fake": {"datasets": datasets,
                              "accounts": [{"name": n, "region": "na"} for n in accounts]}},
    }
    config = build_config(data, {"fake": FakeChannel}, base_dir=tmp_path)
    service = AgentService(config, load_plugins([FakePlugin()], entry_points=False))
    service.freshness.clock = lambda: NOW
    return service


def sample(service, name, **labels):
    return service.metrics.registry.get_sample_value(name, labels)


def data_labels(account, dataset="orders", source="marks"):
    return {"channel": "fake", "account": account, "region": "na", "dataset": dataset,
            "source": source}


@pytest.mark.parametrize(("value", "naive", "expected"), [
    ("2026-11-27T04:00:00Z", None, T),
    ("2026-11-27T06:00:00+02:00", None, T),
    ("2026-11-27 04:00:00", dt.UTC, T),
    ("2026-11-27T05:00:00", zone("Europe/Berlin"), T),
    (T, None, T),
    (int(T), None, T),
    (str(int(T)), None, T),
    (dt.datetime(2026, 11, 27, 4), dt.UTC, T),
    (dt.date(2026, 11, 27), dt.UTC, T - 4 * 3600),
])
def test_timestamps_accepted(value, naive, expected):
    assert to_unix(value, naive=naive) == expected


@pytest.mark.parametrize(("value", "words"), [
    ("2026-11-27T04:00:00", "UTC offset"),
    ("yesterday", "RFC 3339"),
    ("", "RFC 3339"),
    (True, "RFC 3339"),
    (None, "RFC 3339"),
    ([T], "RFC 3339"),
    (float("nan"), "not before 2000"),
    (float("inf"), "not before 2000"),
    (0, "not before 2000"),
    (-T, "not before 2000"),
    ("1999-12-31T23:59:59Z", "not before 2000"),
])
def test_timestamps_refused(value, words):
    with pytest.raises(ValueError, match=words):
        to_unix(value, naive=None)


@pytest.fixture
def marks(tmp_path):
    directory = tmp_path / "marks"
    directory.mkdir()
    return directory


def file_source(path, **options):
    return {"marks": {"type": "file", "path": path, **options}}


ORDERS = {"orders": {"source": "marks", "max_age": "1h"}}


async def test_file_source_reads_modification_times(tmp_path, marks):
    (marks / "a1.orders").write_text("")
    os.utime(marks / "a1.orders", (T, T))
    service = make_service(tmp_path, file_source("marks/{account}.{dataset}"), ORDERS)
    await service.poller.poll("marks")
    assert sample(service, "channel_data_last_updated_timestamp_seconds", **data_labels("a1")) == T
    assert sample(service, "channel_data_staleness_seconds", **data_labels("a1")) == 7200
    assert sample(service, "channel_data_staleness_threshold_seconds",
                  **data_labels("a1")) == 3600
    # a2 has no file: no value yet, so no staleness at all (neither 0 nor infinity)
    assert sample(service, "channel_data_staleness_seconds", **data_labels("a2")) is None
    assert sample(service, "channel_data_last_updated_timestamp_seconds",
                  **data_labels("a2")) is None
    assert sample(service, "channel_data_staleness_threshold_seconds",
                  **data_labels("a2")) == 3600
    assert sample(service, "channel_freshness_source_up", source="marks") == 1
    (a1, a2) = [service.freshness.account_datasets(("fake", name))[0] for name in ("a1", "a2")]
    assert (a1["state"], a1["age"], a1["max_age"], a1["last_updated"]) == (
        "stale", "2h", "1h", "2026-11-27T04:00:00Z")
    assert (a2["state"], a2["age"], a2["last_updated"]) == ("no data yet", None, None)
    await service.stop()


async def test_file_source_reads_json_fields(tmp_path, marks):
    (marks / "a1.json").write_text(json.dumps({"runs": [{"finished": "2026-11-27T05:00:00"}]}))
    (marks / "a2.json").write_text(json.dumps({"runs": [{"finished": T}]}))
    service = make_service(tmp_path, file_source("marks/{account}.json",
                                                 json_field="runs.0.finished",
                                                 timezone="Europe/Berlin"), ORDERS)
    await service.poller.poll("marks")
    for account in ("a1", "a2"):
        assert sample(service, "channel_data_last_updated_timestamp_seconds",
                      **data_labels(account)) == T
    await service.stop()


@pytest.mark.parametrize(("content", "reason", "words"), [
    ("{not json", "bad_value", "is not JSON"),
    ('{"runs": []}', "bad_value", "has no field runs.0"),
    ('{"runs": [{"finished": "soon"}]}', "bad_value", "runs.0.finished must be"),
    ("directory", "unavailable", "cannot read"),
])
async def test_file_source_errors(tmp_path, marks, content, reason, words):
    if content == "directory":
        (marks / "a1.json").mkdir()
    else:
        (marks / "a1.json").write_text(content)
    service = make_service(tmp_path, file_source("marks/{account}.json",
                                                 json_field="runs.0.finished"), ORDERS, ("a1",))
    source = service.config.freshness_sources["marks"]
    dataset = service.freshness.datasets[("fake", "a1", "orders")]
    with pytest.raises(SourceError) as info:
        await source.latest(dataset)
    assert info.value.reason == reason and words in str(info.value)
    await service.stop()


async def test_a_json_null_means_no_data_yet(tmp_path, marks):
    (marks / "a1.json").write_text('{"runs": [{"finished": null}]}')
    service = make_service(tmp_path, file_source("marks/{account}.json",
                                                 json_field="runs.0.finished"), ORDERS, ("a1",))
    await service.poller.poll("marks")
    assert service.freshness.values == {}
    assert sample(service, "channel_freshness_source_up", source="marks") == 1
    await service.stop()


def errors(service, source, reason):
    return sample(service, "channel_freshness_source_errors_total", source=source, reason=reason)


async def test_a_failing_source_keeps_the_last_values_and_is_down(tmp_path, marks):
    (marks / "a1.json").write_text(json.dumps({"t": T}))
    (marks / "a2.json").write_text(json.dumps({"t": T - 60}))
    service = make_service(tmp_path, file_source("marks/{account}.json", json_field="t"), ORDERS)
    await service.poller.poll("marks")
    assert sample(service, "channel_freshness_source_up", source="marks") == 1
    assert errors(service, "marks", "bad_value") == 0

    (marks / "a1.json").write_text("{broken")
    await service.poller.poll("marks")
    assert sample(service, "channel_freshness_source_up", source="marks") == 0
    assert errors(service, "marks", "bad_value") == 1
    assert sample(service, "channel_data_last_updated_timestamp_seconds",
                  **data_labels("a1")) == T  # kept, not dropped and not reset
    assert sample(service, "channel_data_staleness_seconds", **data_labels("a1")) == 7200
    status = service.freshness.account_datasets(("fake", "a1"))[0]
    assert status["source_up"] is False and status["last_updated"] == "2026-11-27T04:00:00Z"

    (marks / "a1.json").write_text(json.dumps({"t": T + 60}))
    await service.poller.poll("marks")
    assert sample(service, "channel_freshness_source_up", source="marks") == 1
    assert sample(service, "channel_data_last_updated_timestamp_seconds",
                  **data_labels("a1")) == T + 60
    await service.stop()


async def test_an_unreachable_source_ends_its_round_early(tmp_path, marks):
    for name in ("a1", "a2", "a3"):
        (marks / f"{name}.json").mkdir()  # unreadable as a file: unavailable
    service = make_service(tmp_path, file_source("marks/{account}.json", json_field="t"),
                           ORDERS, ("a1", "a2", "a3"))
    await service.poller.poll("marks")
    assert errors(service, "marks", "unavailable") == 1
    assert sample(service, "channel_freshness_source_up", source="marks") == 0
    await service.stop()


async def test_a_time_in_the_future_is_a_bad_value(tmp_path, marks):
    (marks / "a1.json").write_text(json.dumps({"t": NOW + 3600}))
    service = make_service(tmp_path, file_source("marks/{account}.json", json_field="t"),
                           ORDERS, ("a1",))
    await service.poller.poll("marks")
    assert errors(service, "marks", "bad_value") == 1
    assert service.freshness.values == {}
    await service.stop()


async def test_values_survive_a_restart_and_unconfigured_data_sets_leave_no_series(tmp_path,
                                                                                    marks):
    (marks / "a1.json").write_text(json.dumps({"t": T}))
    (marks / "a2.json").write_text(json.dumps({"t": T}))
    source = file_source("marks/{account}.json", json_field="t")
    service = make_service(tmp_path, source, ORDERS)
    await service.poller.poll("marks")
    await service.stop()

    restarted = make_service(tmp_path, source, ORDERS, accounts=("a1",))
    assert sample(restarted, "channel_data_last_updated_timestamp_seconds",
                  **data_labels("a1")) == T
    assert sample(restarted, "channel_data_staleness_threshold_seconds",
                  **data_labels("a2")) is None
    # not polled since the restart: no claim about the source yet
    assert sample(restarted, "channel_freshness_source_up", source="marks") is None
    await restarted.stop()


async def test_status_shows_data_sets_next_to_the_credential(tmp_path, marks):
    (marks / "a1.json").write_text(json.dumps({"t": T}))
    service = make_service(tmp_path, file_source("marks/{account}.json", json_field="t"),
                           {"orders": {"source": "marks", "max_age": "3h"}}, ("a1",))
    await service.poller.poll("marks")
    (account,) = service.status()["accounts"]
    assert account["state"] == "pending"
    assert account["datasets"] == [{
        "dataset": "orders", "source": "marks", "source_type": "file", "source_up": True,
        "state": "fresh", "last_updated": "2026-11-27T04:00:00Z", "age_seconds": 7200,
        "age": "2h", "max_age_seconds": 10800.0, "max_age": "3h",
    }]
    assert service.status()["freshness_sources"] == {"marks": {"type": "file", "up": True}}
    await service.stop()


async def test_the_poller_runs_each_source_every_interval(tmp_path, marks):
    (marks / "a1.json").write_text(json.dumps({"t": T}))
    service = make_service(tmp_path, file_source("marks/{account}.json", json_field="t",
                                                 interval="200ms", timeout="100ms"),
                           ORDERS, ("a1",))
    await service.start()
    for _ in range(50):
        if service.freshness.values:
            break
        await asyncio.sleep(0.05)
    assert service.freshness.values[("fake", "a1", "orders")].last_updated == T
    (marks / "a1.json").write_text(json.dumps({"t": T + 1}))
    for _ in range(50):
        if service.freshness.values[("fake", "a1", "orders")].last_updated == T + 1:
            break
        await asyncio.sleep(0.05)
    assert service.freshness.values[("fake", "a1", "orders")].last_updated == T + 1
    await service.stop()



async def test_the_sources_down_count_links_to_the_accounts_they_feed(tmp_path, marks):
    from aiohttp.test_utils import TestClient, TestServer
    from click.testing import CliRunner

    from agent.cli.status import status
    from agent.web.server import make_app

    async def listed_by_cli() -> list[str]:  # the CLI blocks: in a thread, the server serves
        args = ["--url", str(client.make_url("/")), "--source-down", "--json"]
        result = await asyncio.to_thread(CliRunner().invoke, status, args)
        assert result.exit_code == 0, result.output
        return [a["account"] for a in json.loads(result.output)["accounts"]]

    (marks / "a1.json").write_text(json.dumps({"t": T}))
    service = make_service(tmp_path, file_source("marks/{account}.json", json_field="t"), ORDERS)
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    try:
        await service.poller.poll("marks")  # a2's file is missing: a gap, the source is up
        doc = await (await client.get("/api/v1/accounts", params={"source_down": "yes"})).json()
        assert doc["accounts"] == [] and doc["summary"]["sources_down"] == []
        assert await listed_by_cli() == []

        (marks / "a1.json").write_text("{broken")
        await service.poller.poll("marks")
        doc = await (await client.get("/api/v1/accounts", params={"source_down": "yes"})).json()
        assert [a["account"] for a in doc["accounts"]] == ["a1", "a2"] and doc["total"] == 2
        assert await listed_by_cli() == ["a1", "a2"]
        page = await (await client.get("/")).text()
        assert '<a href="/?source_down=yes">1</a>' in page
        listed = await (await client.get("/", params={"source_down": "yes"})).text()
        assert '<option value="yes" selected>a source is down</option>' in listed
        bad = await client.get("/api/v1/accounts", params={"source_down": "no"})
        assert bad.status == 400 and (await bad.json())["field"] == "source_down"
    finally:
        await client.close()
        await service.stop()

"""Accounts from an inventory source, applied to a running agent: the diff, the removal
guard, a restart with the source down, duplicates, invalid rows, labels."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.channel import CheckResult
from agent.inventory import diff
from agent.metrics.exposition import Exposition
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.web.server import make_app
from tests.fakes import FakeChannel, FakePlugin
from tests.inventory_helpers import Connections, inventory_config

PLANTED = "PLANTED-inventory-token-7f3a"


@pytest.fixture
def table(tmp_path):
    return Connections(tmp_path / "platform.db")


def service_for(config) -> AgentService:
    return AgentService(config, load_plugins([FakePlugin()], entry_points=False))


async def refreshed(service: AgentService) -> bool:
    changed = await service.inventory.refresh("crm")
    if changed:
        service.apply_inventory()
    return changed


def exposition(service: AgentService) -> str:
    return Exposition(service.metrics.registry).render().decode()


def account_lines(text: str, account: str) -> list[str]:
    return [line for line in text.splitlines() if f'account="{account}"' in line]


async def test_discovered_accounts_are_watched_with_their_source_and_labels(tmp_path, table):
    table.put({"account": "acme", "region": "eu", "label_merchant": "acme-corp"},
              {"account": "globex", "note": "vip"})
    service = service_for(inventory_config(tmp_path, table.url, static=("static1",)))
    assert await refreshed(service)
    accounts = service.fleet.accounts
    assert sorted(accounts) == [("fake", "acme"), ("fake", "globex"), ("fake", "static1")]
    assert accounts["fake", "acme"].region == "eu"
    assert accounts["fake", "acme"].labels == {"merchant": "acme-corp"}
    assert accounts["fake", "globex"].settings["note"] == "vip"
    status = {a["account"]: a for a in service.status()["accounts"]}
    assert status["acme"]["source"] == "crm" and status["static1"]["source"] == "config"
    assert status["acme"]["labels"] == {"merchant": "acme-corp"}
    text = exposition(service)
    assert 'channel_account_info{account="acme",channel="fake",merchant="acme-corp"} 1.0' in text
    assert 'channel_account_info{account="static1",channel="fake"} 1.0' in text
    assert 'channel_inventory_accounts{channel="fake",source="crm"} 2.0' in text
    assert 'channel_inventory_source_up{source="crm"} 1.0' in text
    async with TestClient(TestServer(make_app(service))) as client:
        page = await (await client.get("/")).text()
    assert "<th>Source</th>" in page
    assert ">acme</a></td><td>fake</td><td>eu</td><td>crm</td>" in page
    assert ">static1</a></td><td>fake</td><td>na</td><td>config</td>" in page
    await service.stop()


async def test_the_accounts_per_source_follow_each_refresh(tmp_path, table):
    table.put({"account": "acme"}, {"account": "globex"})
    service = service_for(inventory_config(tmp_path, table.url))
    assert await refreshed(service)
    assert 'channel_inventory_accounts{channel="fake",source="crm"} 2.0' in exposition(service)
    table.put({"account": "initech"}, {"account": "umbrella"})
    assert await refreshed(service)
    assert 'channel_inventory_accounts{channel="fake",source="crm"} 4.0' in exposition(service)
    await service.stop()


async def test_the_diff_adds_removes_and_changes_without_disturbing_the_others(
        tmp_path, table, monkeypatch):
    table.put(*({"account": f"a{i}"} for i in range(10)))
    config = inventory_config(
        tmp_path, table.url,
        freshness_sources={"pipeline": {"type": "heartbeat"}},
        datasets={"orders": {"source": "pipeline", "max_age": "1h"}})
    service = service_for(config)
    service.scheduler.start()
    assert await refreshed(service)
    for account in list(service.fleet.accounts.values()):
        service.fleet.record(account, CheckResult(valid=True))
    assert ("fake", "a9", "orders") in service.freshness.datasets
    kept_account = service.fleet.accounts["fake", "a1"]
    kept_state = service.fleet.states["fake", "a1"]
    checked_at = kept_state.last_check

    validated = []
    real = diff.validate_row
    monkeypatch.setattr(diff, "validate_row", lambda c, **kw: validated.append(c.key) or
                        real(c, **kw))
    assert not await refreshed(service)  # the same rows: nothing validated, nothing applied
    assert validated == []

    table.put({"account": "a3", "region": "eu"}, {"account": "new"})
    table.delete("a9")
    changed = await service.inventory.refresh("crm")
    assert changed and sorted(validated) == [("fake", "a3"), ("fake", "new")]
    outcome = service.apply_inventory()
    assert (outcome.added, outcome.removed, outcome.changed) == (
        ["fake/new"], ["fake/a9"], ["fake/a3"])
    assert service.fleet.accounts["fake", "a1"] is kept_account
    assert service.fleet.states["fake", "a1"] is kept_state
    assert kept_state.last_check == checked_at
    assert service.fleet.accounts["fake", "a3"].region == "eu"
    async with asyncio.timeout(5):  # the changed account is checked again, soon
        while "a3" not in FakeChannel.calls:
            await asyncio.sleep(0.01)

    text = exposition(service)
    assert account_lines(text, "a9") == []  # credential, info and freshness series: gone
    assert ("fake", "a9", "orders") not in service.freshness.datasets
    assert account_lines(text, "a1")
    await service.stop()


async def test_a_large_removal_is_held_until_the_same_list_has_been_seen_long_enough(
        tmp_path, table):
    table.put(*({"account": f"a{i}"} for i in range(10)))
    service = service_for(inventory_config(tmp_path, table.url, removal_hold="30m"))
    now = [1_000_000.0]
    service.inventory.clock = lambda: now[0]
    assert await refreshed(service)

    table.delete("a0", "a1", "a2")  # 30% > max_removal 20%: an empty replica, a bad WHERE?
    assert not await refreshed(service)
    assert len(service.fleet.accounts) == 10
    held = service.status()["inventory_sources"]["crm"]["removal_held"]
    assert held["removing"] == 3 and held["of"] == 10
    assert 'channel_inventory_removal_held{source="crm"} 1.0' in exposition(service)

    now[0] += 20 * 60
    table.delete("a3")  # a different list: the wait starts again
    assert not await refreshed(service)
    now[0] += 20 * 60
    assert not await refreshed(service)
    assert len(service.fleet.accounts) == 10

    now[0] += 11 * 60
    assert await refreshed(service)
    assert sorted(name for _, name in service.fleet.accounts) == [f"a{i}" for i in range(4, 10)]
    assert 'channel_inventory_removal_held{source="crm"} 0.0' in exposition(service)
    await service.stop()


async def test_a_small_removal_applies_at_once(tmp_path, table):
    table.put(*({"account": f"a{i}"} for i in range(10)))
    service = service_for(inventory_config(tmp_path, table.url))
    assert await refreshed(service)
    table.delete("a0", "a1")  # 20%: not more than max_removal
    assert await refreshed(service)
    assert len(service.fleet.accounts) == 8
    await service.stop()


async def test_a_restart_while_the_source_is_down_still_watches_every_account(tmp_path, table):
    (tmp_path / "a1.token").write_text("file-token\n")
    table.put({"account": "a1", "refresh_token_file": "a1.token", "label_merchant": "m1"},
              {"account": "a2", "refresh_token": PLANTED})
    first = service_for(inventory_config(tmp_path, table.url))
    assert await refreshed(first)
    assert first.fleet.accounts["fake", "a2"].settings["refresh_token"].read().reveal() == \
        PLANTED
    await first.stop()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("agent.db*"))
    assert PLANTED.encode() not in stored  # the token itself is never written down

    table.drop()  # the source is down when the agent starts again
    second = service_for(inventory_config(tmp_path, table.url))
    accounts = second.fleet.accounts
    assert sorted(accounts) == [("fake", "a1"), ("fake", "a2")]
    assert accounts["fake", "a1"].labels == {"merchant": "m1"}
    assert accounts["fake", "a1"].settings["refresh_token"].path == tmp_path / "a1.token"
    assert second.scheduler.withheld(accounts["fake", "a2"])  # its token comes with the source
    assert not second.scheduler.withheld(accounts["fake", "a1"])
    assert not await refreshed(second)
    status = second.status()["inventory_sources"]["crm"]
    assert status["up"] is False and "no such table" in status["error"]
    assert len(second.fleet.accounts) == 2
    assert 'channel_inventory_refresh_failures_total{source="crm"} 1.0' in exposition(second)

    table.__init__(table.path)  # the source is back, with the token
    table.put({"account": "a1", "refresh_token_file": "a1.token", "label_merchant": "m1"},
              {"account": "a2", "refresh_token": PLANTED})
    assert await refreshed(second)
    assert not second.scheduler.withheld(second.fleet.accounts["fake", "a2"])
    await second.stop()


async def test_invalid_rows_are_skipped_and_reported_never_with_a_secret(tmp_path, table,
                                                                         caplog):
    caplog.set_level(logging.WARNING)
    table.put({"account": "good"},
              {"account": "bad-region", "region": "mars", "refresh_token": PLANTED},
              {"account": "bad name!", "refresh_token": PLANTED},
              {"account": "other-channel", "channel": "shopify"})
    service = service_for(inventory_config(tmp_path, table.url))
    assert await refreshed(service)
    assert list(service.fleet.accounts) == [("fake", "good")]
    problems = service.status()["inventory_sources"]["crm"]["invalid_rows"]
    assert problems == [
        "inventory source crm, row 2 (fake/bad-region): region: must be one of na, eu",
        "inventory source crm, row 3 (fake/bad name!): account: must match [A-Za-z0-9_.-]+ "
        "(it becomes a Prometheus label value)",
        "inventory source crm, row 4 (shopify/other-channel): channel 'shopify' is not fed by "
        "this source (it feeds fake)",
    ]
    assert 'channel_inventory_invalid_rows{source="crm"} 3.0' in exposition(service)
    assert PLANTED not in caplog.text and PLANTED not in str(service.status())

    table.put({"account": "good", "region": "mars"})  # a known account's row goes bad
    assert not await refreshed(service)
    assert service.fleet.accounts["fake", "good"].region == "na"  # its last good row stays
    await service.stop()


async def test_an_account_in_two_sources_is_kept_once_and_reported(tmp_path, table):
    other = Connections(tmp_path / "other.db")
    table.put({"account": "shared", "region": "eu"}, {"account": "only-b"},
              {"account": "static1"})
    other.put({"account": "shared", "region": "na"}, {"account": "only-a"})
    config = inventory_config(tmp_path, table.url, static=("static1",))
    b = config.inventory_sources.pop("crm")
    a = inventory_config(tmp_path, other.url).inventory_sources["crm"]
    a.name, b.name = "a-crm", "b-crm"
    config.inventory_sources.update({"a-crm": a, "b-crm": b})
    service = service_for(config)
    for name in ("a-crm", "b-crm"):
        await service.inventory.refresh(name)
    service.apply_inventory()
    accounts = service.fleet.accounts
    shared = accounts["fake", "shared"]
    assert shared.source == "a-crm" and shared.region == "na"
    assert accounts["fake", "static1"].source == "config"
    assert sorted(service.status()["inventory_sources"]["b-crm"]["duplicates"]) == [
        "fake/shared: inventory source a-crm lists it too, and wins (the first by name)",
        "fake/static1: the configuration file lists it too, and wins",
    ]
    assert 'channel_inventory_duplicate_accounts{source="b-crm"} 2.0' in exposition(service)
    await service.stop()


async def test_labels_are_validated_and_limited(tmp_path):
    many = {f"label_l{i}": "x" for i in range(11)}
    table = Connections(tmp_path / "platform.db", (*many, "label_channel", "label_tier"))
    table.put({"account": "too-many", **many}, {"account": "reserved", "label_channel": "x"},
              {"account": "fine", "label_tier": "gold"})
    service = service_for(inventory_config(tmp_path, table.url, labels={"team": "sre"}))
    assert await refreshed(service)
    assert list(service.fleet.accounts) == [("fake", "fine")]
    assert service.fleet.accounts["fake", "fine"].labels == {"team": "sre", "tier": "gold"}
    problems = " ".join(service.status()["inventory_sources"]["crm"]["invalid_rows"])
    assert "labels: has 12 labels; at most 10 are allowed per account" in problems
    assert "labels.channel: is reserved" in problems
    await service.stop()


async def test_every_bad_label_of_a_row_is_reported_by_name_never_its_value(tmp_path):
    table = Connections(tmp_path / "platform.db", ("label_channel", "label___x", "label_tier",
                                                   "label_ok"))
    table.put({"account": "bad", "label_channel": "SECRET-1", "label___x": "SECRET-2",
               "label_tier": "SECRET-3-" + "x" * 300, "label_ok": "fine"})
    service = service_for(inventory_config(tmp_path, table.url))
    assert not await refreshed(service)
    assert service.status()["inventory_sources"]["crm"]["invalid_rows"] == [
        "inventory source crm, row 1 (fake/bad): labels.channel: is reserved: channel and "
        "account are channel_account_info's own; labels.__x: is not a Prometheus label name "
        "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __); labels.tier: must be at most 256 "
        "characters"]
    assert "SECRET" not in str(service.status())
    await service.stop()


async def test_a_reload_revalidates_a_changed_source_and_drops_a_removed_one(tmp_path, table):
    table.put({"account": "a1"}, {"account": "a2"})
    configs = [inventory_config(tmp_path, table.url, labels={"team": "blue"})]
    service = AgentService(configs[0], load_plugins([FakePlugin()], entry_points=False),
                           loader=lambda: configs[-1])
    assert await refreshed(service)
    assert service.fleet.accounts["fake", "a1"].labels == {"team": "blue"}

    configs.append(inventory_config(tmp_path, table.url, labels={"team": "green"}))
    assert (await service.reload()).ok
    assert service.fleet.accounts["fake", "a1"].labels == {"team": "blue"}  # until it refreshes
    assert await refreshed(service)  # the same rows, validated again under the new settings
    assert service.fleet.accounts["fake", "a1"].labels == {"team": "green"}

    configs.append(inventory_config(tmp_path, table.url, static=("static1",)))
    configs[-1].inventory_sources.clear()
    outcome = await service.reload()
    assert outcome.removed == ["fake/a1", "fake/a2"]
    assert list(service.fleet.accounts) == [("fake", "static1")]
    await service.stop()


async def test_an_answer_exactly_as_last_time_costs_no_work_per_row(tmp_path, table, monkeypatch):
    table.put(*({"account": f"a{i}"} for i in range(5)), {"account": "bad", "region": "mars"})
    config = inventory_config(tmp_path, table.url)
    service = service_for(config)
    assert await refreshed(service)
    [problem] = service.inventory.status["crm"].problems

    looked_at = []
    real = diff.answer_digest
    monkeypatch.setattr(diff, "answer_digest", lambda row: looked_at.append(row) or real(row))
    assert not await refreshed(service)
    assert looked_at == []  # not a row read: the whole answer's digest was the last one's
    assert service.inventory.status["crm"].problems == [problem]  # still reported
    assert service.inventory.status["crm"].up

    table.put({"account": "a2", "region": "eu"})  # one value of one row
    assert await refreshed(service)
    assert len(looked_at) == 6
    assert service.fleet.accounts["fake", "a2"].region == "eu"
    await service.stop()

    # a restart restores the list without the answer it came from: the first refresh looks at
    # each row (and finds nothing changed), the next at none
    service = service_for(config)
    looked_at.clear()
    assert not await refreshed(service)
    assert len(looked_at) == 6
    assert not await refreshed(service)
    assert len(looked_at) == 6
    assert service.fleet.accounts["fake", "a2"].region == "eu"
    await service.stop()

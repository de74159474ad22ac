"""An inventory's new list applied in steps (AgentService.apply_inventory_stepped): the event
loop is served between the steps, and whatever runs meanwhile sees the old fleet with its
data sets or the new one with its, never a mix; what came meanwhile is kept."""

from __future__ import annotations

import asyncio

import pytest

from agent import steps
from agent.channel import CheckResult
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel, FakePlugin
from tests.inventory_helpers import Connections, inventory_config


@pytest.fixture
def service(tmp_path):
    FakeChannel.reset()
    table = Connections(tmp_path / "platform.db")
    table.put(*({"account": f"old{i}"} for i in range(5)))
    config = inventory_config(tmp_path, table.url, static=("s1",),
                              freshness_sources={"pipe": {"type": "heartbeat"}},
                              datasets={"orders": {"source": "pipe", "max_age": "1h"},
                                        "refunds": {"source": "pipe", "max_age": "1h"}})
    agent = AgentService(config, load_plugins([FakePlugin()], entry_points=False))
    agent.table = table  # type: ignore[attr-defined]
    return agent


async def test_a_new_list_is_applied_in_steps_never_half(service, monkeypatch):
    assert await service.inventory.refresh("crm")
    service.apply_inventory()  # the old fleet, at once
    old = set(service.fleet.accounts)
    service.table.delete("old0")
    service.table.put(*({"account": f"new{i}"} for i in range(12)))
    assert await service.inventory.refresh("crm")
    monkeypatch.setattr(steps, "STEP", 2)

    seen: list[tuple[frozenset, frozenset, frozenset]] = []
    done = False

    async def meanwhile() -> None:
        first = True
        while not done:
            fleet = service.fleet
            seen.append((frozenset(fleet.accounts), frozenset(fleet.states),
                         frozenset(service.freshness.by_account)))
            if first:  # a heartbeat and a check result while the new list is being made
                first = False
                datasets = service.freshness.datasets
                service.freshness.record(datasets["fake", "old1", "orders"], 1_700_000_000.0)
                FakeChannel.script["old2"] = CheckResult(valid=False, reason="invalid_grant")
                await service.scheduler.check_now(fleet.accounts["fake", "old2"])
            await asyncio.sleep(0)

    probe = asyncio.create_task(meanwhile())
    await asyncio.sleep(0)
    outcome = await service.apply_inventory_stepped()
    done = True
    await probe

    new = set(service.fleet.accounts)
    assert new == old - {("fake", "old0")} | {("fake", f"new{i}") for i in range(12)}
    assert outcome.added == [f"fake/new{i}" for i in sorted(range(12), key=str)]
    assert outcome.removed == ["fake/old0"]
    assert len(seen) > 5, "the loop was not served while the list was applied"
    for accounts, states, datasets in seen:
        assert accounts in (old, new) and states == accounts and datasets == accounts
    assert seen[0][0] == old
    # what came meanwhile is kept
    assert service.freshness.values["fake", "old1", "orders"].last_updated == 1_700_000_000.0
    assert service.fleet.states["fake", "old2"].rejection == "invalid_grant"
    assert len(service.freshness.datasets) == 2 * len(new)
    await service.stop()


async def test_the_inventory_loop_applies_a_changed_list_in_steps(service):
    await service.start()
    try:
        for _ in range(200):
            if len(service.fleet.accounts) == 6:
                break
            await asyncio.sleep(0.01)
        assert set(service.fleet.accounts) == {("fake", "s1"), *(("fake", f"old{i}")
                                                                 for i in range(5))}
        assert len(service.freshness.datasets) == 12
    finally:
        await service.stop()


def test_saved_states_are_read_a_step_at_a_time_and_a_row_written_meanwhile_is_current(
        tmp_path, monkeypatch):
    from agent.storage.state import AccountState, StateStore

    store = StateStore(tmp_path / "agent.db")
    for i in range(5):
        store.save_account(AccountState("fake", f"a{i}", "na", reason=f"r{i}",
                                        targets={"1": True} if i == 3 else {}))
    store.flush()
    expected = store.load_accounts()
    monkeypatch.setattr(steps, "STEP", 2)
    loading = store.load_accounts_steps()
    next(loading)  # a0 and a1 read
    store.save_account(AccountState("fake", "a0", "na", reason="written meanwhile"))
    store.flush()
    restored = steps.drain(loading)
    assert restored.keys() == expected.keys()
    assert restored["fake", "a0"].reason == "written meanwhile"
    assert all(restored[key] == expected[key] for key in expected if key != ("fake", "a0"))
    assert restored["fake", "a3"].targets == {"1": True}
    store.close()


def test_offsets_made_ahead_are_the_schedulers_own():
    from agent.channel import Account
    from agent.checks.scheduler import fractions, offset

    accounts = {("fake", f"a{i}"): Account("fake", f"a{i}", "na") for i in range(7)}
    made = steps.drain(fractions(accounts, skip={("fake", "a2")}))
    assert made.keys() == accounts.keys() - {("fake", "a2")}
    for key, fraction in made.items():
        assert fraction * 300.0 == offset(accounts[key], 300.0)

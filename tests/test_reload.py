"""Reloading the configuration while the agent runs (AgentService.reload: SIGHUP, /-/reload)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agent.channel import CheckResult
from agent.config.loader import load_config
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel, FakePlugin


def write_config(path, accounts=("a1", "a2"), interval="1h", timeout="500ms", notes=None,
                 files_source=False):
    """The fake channel's accounts; ``files_source``: a polled freshness source and a data set
    read from it for every account."""
    notes = notes or {}
    channel = {"accounts": [
        {"name": name, "region": "na", "note": notes.get(name, "")} for name in accounts
    ]}
    sources = {}
    if files_source:
        sources = {"files": {"type": "file", "path": str(path.parent / "{account}.synced"),
                             "interval": "1h"}}
        channel["datasets"] = {"orders": {"source": "files", "max_age": "1d"}}
    path.write_text(json.dumps({
        "agent": {"state_path": str(path.parent / "agent.db"), "check_interval": interval,
                  "check_timeout": timeout},
        "freshness_sources": sources,
        "channels": {"fake": channel},
    }))


@pytest.fixture
async def running(tmp_path):
    """A started AgentService whose loader re-reads tmp_path/config.yaml."""
    path = tmp_path / "config.yaml"
    write_config(path)
    plugins = load_plugins([FakePlugin()], entry_points=False)

    def loader():
        return load_config(path, plugins.channels)

    service = AgentService(loader(), plugins, loader=loader)
    await service.start()
    service.path = path
    yield service
    await service.stop()


def sample(service, name, account=None, **labels):
    if account is not None:
        labels |= {"channel": "fake", "account": account, "region": "na"}
    return service.metrics.registry.get_sample_value(name, labels)


async def wait_until(condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never met")


async def test_added_accounts_are_checked_and_removed_ones_leave_no_series(running):
    for account in running.fleet.accounts.values():
        await running.scheduler.check_now(account)
    assert sample(running, "channel_credential_valid", "a2") == 1

    write_config(running.path, accounts=("a1", "a3"))
    outcome = await running.reload()

    assert (outcome.ok, outcome.added, outcome.removed) == (True, ["fake/a3"], ["fake/a2"])
    assert running.scheduler.scheduled() == {("fake", "a1"), ("fake", "a3")}
    assert sample(running, "channel_credential_valid", "a2") is None
    assert sample(running, "channel_credential_check_failures_total", "a2") is None
    assert sample(running, "channel_credential_valid", "a1") == 1  # kept its state
    await running.scheduler.check_now(running.find_account("fake", "a3"))
    assert sample(running, "channel_credential_valid", "a3") == 1
    assert sample(running, "channel_agent_accounts", channel="fake") == 2


async def test_a_bad_config_keeps_the_old_one_and_says_why(running, caplog):
    loaded_at = sample(running, "channel_agent_config_last_reload_success_timestamp_seconds")
    assert sample(running, "channel_agent_config_last_reload_successful") == 1
    running.path.write_text("agent:\n  check_intervall: 5m\nchannels:\n  fake:\n    accounts: 3\n")
    with caplog.at_level(logging.ERROR):
        outcome = await running.reload()

    assert not outcome.ok and len(outcome.problems) == 2
    assert set(running.fleet.accounts) == {("fake", "a1"), ("fake", "a2")}
    assert sample(running, "channel_agent_config_last_reload_successful") == 0
    assert sample(running, "channel_agent_config_last_reload_success_timestamp_seconds") == (
        loaded_at)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "agent.check_intervall: unknown key" in logged
    assert "channels.fake.accounts: must be a list of accounts" in logged

    write_config(running.path)
    assert (await running.reload()).ok
    assert sample(running, "channel_agent_config_last_reload_successful") == 1
    assert sample(running, "channel_agent_config_last_reload_success_timestamp_seconds") >= (
        loaded_at)


async def test_changed_account_settings_apply_from_the_next_check(running):
    write_config(running.path, notes={"a1": "after"})
    outcome = await running.reload()
    assert outcome.changed == ["fake/a1"]
    await running.scheduler.check_now(running.find_account("fake", "a1"))
    assert FakeChannel.seen["a1"].settings["note"] == "after"


async def test_a_new_check_interval_replans_every_loop(running):
    await asyncio.sleep(0.1)
    assert FakeChannel.calls == []  # 1h interval: nothing is due yet
    write_config(running.path, interval="200ms", timeout="100ms")
    await running.reload()
    await wait_until(lambda: {"a1", "a2"} <= set(FakeChannel.calls))


async def test_a_check_running_during_a_reload_finishes(running):
    write_config(running.path, interval="100ms", timeout="50ms")
    await running.reload()
    FakeChannel.delay = 0.3
    await wait_until(lambda: "a2" in FakeChannel.running)
    write_config(running.path, accounts=("a1",), interval="100ms", timeout="50ms")
    await running.reload()
    assert "a2" in FakeChannel.running
    await wait_until(lambda: "a2" in FakeChannel.finished)
    assert ("fake", "a2") not in running.fleet.states  # its result went nowhere


async def test_an_account_added_back_resumes_its_stored_state(running):
    FakeChannel.script["a2"] = CheckResult(valid=False, reason="invalid_grant")
    await running.scheduler.check_now(running.find_account("fake", "a2"))
    write_config(running.path, accounts=("a1",))
    await running.reload()
    write_config(running.path, accounts=("a1", "a2"))
    await running.reload()
    state = running.fleet.states[("fake", "a2")]
    assert (state.valid, state.reason) == (False, "invalid_grant")


async def test_without_a_file_there_is_nothing_to_reload(fake_config):
    service = AgentService(fake_config(), load_plugins([FakePlugin()], entry_points=False))
    outcome = await service.reload()
    assert not outcome.ok and "no configuration file" in outcome.problems[0]
    await service.stop()


async def test_freshness_sources_follow_the_reloaded_config(running):
    assert running.poller.loops.names() == set()
    write_config(running.path, files_source=True)
    assert (await running.reload()).ok
    assert running.poller.loops.names() == {"files"}
    assert ("fake", "a1", "orders") in running.freshness.datasets
    write_config(running.path)
    assert (await running.reload()).ok
    assert running.poller.loops.names() == set() and running.freshness.datasets == {}

"""The core with a scripted channel: scheduler, fleet, metrics and state together."""

import asyncio
import json

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.channel import CheckResult, Secret
from agent.checks.scheduler import offset
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel, FakePlugin

L = {"channel": "fake", "account": "a1", "region": "na"}


def _service(config):
    return AgentService(config, load_plugins([FakePlugin()], entry_points=False))


def value(service, name, **labels):
    return service.metrics.registry.get_sample_value(name, {**L, **labels})


async def test_conclusive_then_transient_keeps_validity(fake_config):
    service = _service(fake_config())
    account = service.find_account("fake", "a1")
    FakeChannel.script["a1"] = CheckResult(valid=False, reason="invalid_grant", detail="revoked")
    await service.scheduler.check_now(account)
    assert value(service, "channel_credential_valid") == 0
    assert value(service, "channel_credential_check_success") == 1
    assert value(service, "channel_credential_failure_reason", reason="invalid_grant",
                 **{"class": "credential"}) == 1

    FakeChannel.script["a1"] = CheckResult(valid=None, reason="throttled")
    await service.scheduler.check_now(account)
    assert value(service, "channel_credential_valid") == 0
    assert value(service, "channel_credential_check_success") == 0
    assert value(service, "channel_credential_failure_reason", reason="throttled",
                 **{"class": "transient"}) == 1
    assert value(service, "channel_credential_failure_reason", reason="invalid_grant") is None
    # the rejection the alerts act on stands through the transient check
    assert value(service, "channel_credential_rejection_reason", reason="invalid_grant",
                 **{"class": "credential"}) == 1
    assert value(service, "channel_credential_check_failures_total") == 2
    reg = service.metrics.registry
    assert reg.get_sample_value("channel_check_failures_total",
                                {"channel": "fake", "reason": "throttled"}) == 1
    assert reg.get_sample_value("channel_check_failures_total",
                                {"channel": "fake", "reason": "forbidden"}) == 0
    await service.stop()


async def test_the_rejection_reason_is_one_series_per_account_while_invalid(fake_config):
    service = _service(fake_config())
    account = service.find_account("fake", "a1")

    def rejections():
        text = generate_latest(service.metrics.registry).decode()
        return [(s.labels["reason"], s.labels["class"])
                for f in text_string_to_metric_families(text)
                if f.name == "channel_credential_rejection_reason"
                for s in f.samples if s.labels["account"] == "a1"]

    FakeChannel.script["a1"] = CheckResult(valid=None, reason="timeout")
    await service.scheduler.check_now(account)
    assert rejections() == []  # never concluded: nothing rejected
    FakeChannel.script["a1"] = CheckResult(valid=False, reason="forbidden")
    await service.scheduler.check_now(account)
    assert rejections() == [("forbidden", "permission")]
    FakeChannel.script["a1"] = CheckResult(valid=False, reason="invalid_grant")
    await service.scheduler.check_now(account)
    assert rejections() == [("invalid_grant", "credential")]  # replaced, not added
    FakeChannel.script["a1"] = CheckResult(valid=True)
    await service.scheduler.check_now(account)
    assert rejections() == []
    await service.stop()


async def test_valid_absent_until_first_conclusive_check(fake_config):
    service = _service(fake_config())
    FakeChannel.script["a1"] = CheckResult(valid=None, reason="server_error")
    await service.scheduler.check_now(service.find_account("fake", "a1"))
    assert value(service, "channel_credential_valid") is None
    assert value(service, "channel_credential_check_success") == 0
    await service.stop()


async def test_plugin_exception_is_contained_and_counted(fake_config):
    service = _service(fake_config())
    FakeChannel.script["a1"] = RuntimeError("bug in plugin")
    state = await service.scheduler.check_now(service.find_account("fake", "a1"))
    assert state.reason == "plugin_error" and state.valid is None
    await service.scheduler.check_now(service.find_account("fake", "a2"))
    assert service.fleet.states[("fake", "a2")].valid is True
    await service.stop()


async def test_secrets_in_plugin_details_and_exceptions_are_masked(fake_config, caplog):
    service = _service(fake_config())
    Secret("odd-shaped-client-secret-9f")  # what the config loader does with every secret
    FakeChannel.script["a1"] = CheckResult(
        valid=False, reason="invalid_grant", detail="odd-shaped-client-secret-9f rejected")
    FakeChannel.script["a2"] = RuntimeError("token Atzr|from-an-exception leaked")
    with caplog.at_level("INFO"):
        for name in ("a1", "a2"):
            await service.scheduler.check_now(service.find_account("fake", name))
    text = json.dumps(service.status()) + caplog.text + str(service.store.load_accounts())
    assert "odd-shaped-client-secret-9f" not in text and "from-an-exception" not in text
    assert "*** rejected" in service.fleet.states[("fake", "a1")].detail
    await service.stop()


async def test_slow_check_times_out_as_transient(fake_config, monkeypatch):
    monkeypatch.setattr("agent.checks.scheduler.HARD_TIMEOUT_GRACE", 0.0)
    service = _service(fake_config(check_timeout="100ms"))
    FakeChannel.delay = 5
    state = await service.scheduler.check_now(service.find_account("fake", "a1"))
    assert (state.valid, state.reason) == (None, "timeout")
    await service.stop()


async def test_never_two_checks_of_one_account_at_once(fake_config):
    service = _service(fake_config())
    FakeChannel.delay = 0.05
    account = service.find_account("fake", "a1")
    await asyncio.gather(*(service.scheduler.check_now(account) for _ in range(5)))
    assert FakeChannel.max_parallel_same_account == 0
    assert FakeChannel.calls.count("a1") == 1  # the others waited for the running check
    await service.stop()


async def test_concurrency_is_bounded(fake_config):
    names = [f"acct{i}" for i in range(10)]
    service = _service(fake_config(accounts=names, max_concurrency=3))
    FakeChannel.delay = 0.02
    peak = 0

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, len(FakeChannel.running))
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(service.scheduler.check_now(a) for a, _ in service.fleet))
    watcher.cancel()
    assert 1 <= peak <= 3
    await service.stop()


def test_offsets_are_deterministic_and_spread(fake_config):
    config = fake_config(accounts=[f"acct{i}" for i in range(200)])
    offsets = [offset(a, 300) for a in config.accounts()]
    assert offsets == [offset(a, 300) for a in config.accounts()]
    assert all(0 <= o < 300 for o in offsets)
    buckets = {int(o // 60) for o in offsets}
    assert buckets == {0, 1, 2, 3, 4}


async def test_scheduler_checks_every_account_each_interval(fake_config):
    service = _service(fake_config(check_interval="200ms", check_timeout="100ms"))
    await service.start()
    await asyncio.sleep(0.5)
    await service.stop()
    for name in ("a1", "a2", "a3"):
        assert 2 <= FakeChannel.calls.count(name) <= 3


async def test_state_is_restored_and_removed_accounts_leave_no_series(fake_config):
    service = _service(fake_config())
    FakeChannel.script["a1"] = CheckResult(valid=False, reason="invalid_grant")
    await service.scheduler.check_now(service.find_account("fake", "a1"))
    await service.scheduler.check_now(service.find_account("fake", "a2"))
    await service.stop()

    restarted = _service(fake_config(accounts=("a1", "a3")))
    assert value(restarted, "channel_credential_valid") == 0
    assert value(restarted, "channel_credential_failure_reason", reason="invalid_grant",
                 **{"class": "credential"}) == 1
    assert value(restarted, "channel_credential_rejection_reason", reason="invalid_grant",
                 **{"class": "credential"}) == 1
    exposition = generate_latest(restarted.metrics.registry).decode()
    assert 'account="a2"' not in exposition
    accounts = {f.name: f for f in text_string_to_metric_families(exposition)}
    assert accounts["channel_agent_accounts"].samples[0].value == 2
    await restarted.stop()


async def test_client_validity_is_exported_per_channel(fake_config):
    service = _service(fake_config())
    FakeChannel.script["a1"] = CheckResult(valid=False, reason="invalid_client", client_valid=False)
    await service.scheduler.check_now(service.find_account("fake", "a1"))
    reg = service.metrics.registry
    assert reg.get_sample_value("channel_client_valid", {"channel": "fake"}) == 0
    await service.stop()


async def test_refresh_token_expiry_follows_max_age(fake_config):
    service = _service(fake_config())
    FakeChannel.script["a1"] = CheckResult(valid=True, refresh_token_fingerprint="abc")
    await service.scheduler.check_now(service.find_account("fake", "a1"))
    issued = value(service, "channel_refresh_token_issued_timestamp_seconds")
    assert value(service, "channel_refresh_token_expiry_timestamp_seconds") == issued + 86400
    assert value(service, "channel_token_age_seconds", token="refresh") >= 0
    await service.stop()


async def test_alert_rule_inputs_are_exported(fake_config):
    # ChannelAgentChecksStalled compares check ages with the interval and the agent's uptime.
    service = _service(fake_config(check_interval="7m", check_timeout="30s"))
    reg = service.metrics.registry
    assert reg.get_sample_value("channel_agent_check_interval_seconds") == 420
    assert reg.get_sample_value("process_start_time_seconds") > 0
    await service.stop()


def test_a_long_detail_is_cut_by_the_core_for_every_channel():
    from agent.channel import DETAIL_LIMIT, CheckResult

    result = CheckResult(valid=None, reason="server_error", detail="x" * 10_000)
    assert len(result.detail) == DETAIL_LIMIT and result.detail.endswith("…")
    assert CheckResult(valid=None, reason="server_error", detail="short").detail == "short"

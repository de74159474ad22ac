"""The scheduler's timetable and workers: one heap for the fleet, max_concurrency workers."""

import asyncio
import dataclasses
import time

from agent.checks.scheduler import offset
from agent.checks.timetable import Timetable
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel, FakePlugin


def _service(config):
    return AgentService(config, load_plugins([FakePlugin()], entry_points=False))


async def wait_until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_the_timetable_hands_out_each_key_once_in_time_order():
    fired = []
    table = Timetable(time.monotonic, lambda key, when: fired.append(key))
    now = time.monotonic()
    table.plan(("c", "late"), now + 0.06)
    table.plan(("c", "second"), now + 0.03)
    table.plan(("c", "dropped"), now + 0.02)
    table.plan(("c", "moved"), now + 0.5)
    table.plan(("c", "moved"), now + 0.01)  # planned again: the earlier time stands alone
    table.drop(("c", "dropped"))
    assert table.keys() == {("c", "late"), ("c", "second"), ("c", "moved")}
    await wait_until(lambda: len(fired) == 3)
    await asyncio.sleep(0.6)  # past the superseded time of "moved"
    assert fired == [("c", "moved"), ("c", "second"), ("c", "late")]
    assert len(table) == 0 and table.next_due() is None


async def test_the_fleet_is_planned_without_a_task_per_account(fake_config):
    names = [f"acct{i}" for i in range(300)]
    service = _service(fake_config(accounts=names, check_interval="1h", max_concurrency=4))
    before = len(asyncio.all_tasks())
    service.scheduler.start()
    assert service.scheduler.scheduled() == {("fake", name) for name in names}
    assert len(asyncio.all_tasks()) - before == 4  # the workers
    await service.stop()


async def test_first_checks_come_in_offset_order(fake_config):
    names = [f"acct{i}" for i in range(12)]
    service = _service(fake_config(accounts=names, check_interval="600ms",
                                   check_timeout="100ms"))
    service.scheduler.start()
    await wait_until(lambda: set(names) <= set(FakeChannel.calls))
    await service.stop()
    first = list(dict.fromkeys(FakeChannel.calls))[:len(names)]
    by_offset = sorted(service.fleet.accounts.values(), key=lambda a: offset(a, 0.6))
    assert first == [account.name for account in by_offset]


async def test_a_lower_concurrency_retires_workers_without_cancelling_a_check(fake_config):
    config = fake_config(check_interval="100ms", check_timeout="90ms", max_concurrency=4)
    service = _service(config)
    scheduler = service.scheduler
    service.scheduler.start()
    FakeChannel.delay = 0.2
    await wait_until(lambda: FakeChannel.running)
    checking = set(FakeChannel.running)
    lower = dataclasses.replace(config.agent, max_concurrency=1)
    scheduler.reconfigure(config.channels, lower)
    await wait_until(lambda: checking <= set(FakeChannel.finished))  # not cancelled
    await wait_until(lambda: len(scheduler._workers) == 1)
    higher = dataclasses.replace(config.agent, max_concurrency=3)
    scheduler.reconfigure(config.channels, higher)
    assert len(scheduler._workers) == 3
    await service.stop()
    assert FakeChannel.max_parallel_same_account == 0


async def test_an_error_in_the_core_does_not_take_the_account_off_the_schedule(
        fake_config, monkeypatch):
    service = _service(fake_config(accounts=("a1",), check_interval="100ms",
                                   check_timeout="50ms"))
    real = service.fleet.record
    failures = []

    def record_once_failing(account, result):
        if not failures:
            failures.append(account.key)
            raise OSError("disk full")
        return real(account, result)

    monkeypatch.setattr(service.fleet, "record", record_once_failing)
    service.scheduler.start()
    await wait_until(lambda: FakeChannel.calls.count("a1") >= 3)
    assert failures == [("fake", "a1")]
    assert service.fleet.states[("fake", "a1")].valid is True
    assert service.scheduler.scheduled() == {("fake", "a1")}
    await service.stop()


async def test_a_new_interval_replans_an_account_whose_check_runs(fake_config):
    config = fake_config(accounts=("a1",), check_interval="100ms", check_timeout="90ms")
    service = _service(config)
    FakeChannel.delay = 0.3
    service.scheduler.start()
    await wait_until(lambda: "a1" in FakeChannel.running)
    slower = dataclasses.replace(config.agent, check_interval=3600.0)
    service.scheduler.reconfigure(config.channels, slower)
    await wait_until(lambda: "a1" in FakeChannel.finished)
    await asyncio.sleep(0.2)
    assert FakeChannel.calls == ["a1"]  # planned once, an hour away: not again at 100 ms
    assert service.scheduler.scheduled() == {("fake", "a1")}
    await service.stop()

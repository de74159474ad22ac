"""The state store's commits run off the event loop (agent.storage.commits): the loop never
waits for the disk, batches land in order with a later write of a row winning, a failed
commit is counted and retried, a heartbeat is answered only once on disk, and close()
drains what is under way and what is pending."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

import agent.storage.state as state_module
from agent.channel import CheckResult
from agent.storage.commits import StateWriteError
from agent.storage.state import AccountState, StateStore, Transition
from agent.web.server import make_app
from tests.test_freshness import make_service
from tests.test_freshness_api import DATASETS, GOOD, SOURCES


class Disk:
    """Every connection the store opens, watched: which thread ran each COMMIT; a COMMIT
    can be held (``hold``) until ``release``, and the next ``fail`` ones fail."""

    def __init__(self) -> None:
        self.commit_threads: list[str] = []
        self.entered = threading.Event()  # a held COMMIT is waiting
        self.gate = threading.Event()
        self.gate.set()
        self.fail = 0

    def hold(self) -> None:
        self.entered.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def held(self) -> None:
        """In the thread about to commit: wait while held (a bound, for the old code that
        commits on the loop thread)."""
        if not self.gate.is_set():
            self.entered.set()
            self.gate.wait(2)

    def connect(self, *args, **kwargs) -> sqlite3.Connection:
        disk = self

        class Watched(sqlite3.Connection):
            def execute(self, sql, *params):
                if sql.strip().upper() == "COMMIT" and disk.fail:
                    disk.held()
                    disk.fail -= 1
                    raise sqlite3.OperationalError("disk I/O error (injected)")
                return super().execute(sql, *params)

            def commit(self):
                if disk.fail and self.in_transaction:
                    disk.held()
                    disk.fail -= 1
                    raise sqlite3.OperationalError("disk I/O error (injected)")
                return super().commit()

        db = sqlite3.connect(*args, **kwargs, factory=Watched)

        def traced(sql: str) -> None:  # every COMMIT (C-level ones too), in its thread
            if sql.strip().upper() == "COMMIT":
                disk.commit_threads.append(threading.current_thread().name)
                disk.held()

        db.set_trace_callback(traced)
        return db


@pytest.fixture
def disk(monkeypatch):
    disk = Disk()
    real = sqlite3.connect
    monkeypatch.setattr(state_module.sqlite3, "connect",
                        lambda *a, **kw: disk.connect(*a, **kw) if "factory" not in kw
                        else real(*a, **kw))
    monkeypatch.setattr(state_module, "RETRY_DELAY", 0.05, raising=False)
    yield disk
    disk.release()


def checked(name: str, reason: str | None, now: float = 100) -> AccountState:
    state = AccountState(channel="fake", account=name, region="na")
    state.apply(CheckResult(valid=None if reason else True, reason=reason), now=now)
    return state


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT account, reason FROM accounts ORDER BY account").fetchall()


def freshness_rows(path) -> dict[str, float]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT account, last_updated FROM freshness"))


async def until(condition, what: str) -> None:
    """Wait (the loop running) until ``condition()``; a generous bound, not a timing test."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


async def test_commits_in_a_running_loop_run_off_the_loop_thread(tmp_path, disk):
    path = tmp_path / "agent.db"
    store = StateStore(path, flush_delay=0.01)
    del disk.commit_threads[:]  # the migration's, before any loop
    store.save_account(checked("a1", "timeout"))
    await until(lambda: rows(path) == [("a1", "timeout")], "the row committed")
    await until(lambda: disk.commit_threads, "a commit seen")
    assert threading.current_thread().name not in disk.commit_threads
    store.close()


async def test_the_loop_runs_while_a_commit_waits_for_the_disk(tmp_path, disk):
    path = tmp_path / "agent.db"
    store = StateStore(path, flush_delay=0.01)
    disk.hold()
    store.save_account(checked("a1", "timeout"))
    await until(disk.entered.is_set, "the commit started")
    for _ in range(3):  # the loop goes on meanwhile
        await asyncio.sleep(0.01)
    assert rows(path) == []
    disk.release()
    await until(lambda: rows(path) == [("a1", "timeout")], "the row committed")
    store.close()


async def test_a_later_write_of_a_row_wins_and_transitions_keep_their_order(tmp_path, disk):
    path = tmp_path / "agent.db"
    store = StateStore(path, flush_delay=0.01)
    key = ("fake", "a1")
    first, second = Transition(1, "pending", "unverified", "timeout", ""), Transition(
        2, "unverified", "valid", None, "")
    disk.hold()
    store.save_account(checked("a1", "timeout"))
    store.save_transition(key, first)
    await until(disk.entered.is_set, "the first batch's commit started")
    store.save_account(checked("a1", None, now=200))  # written while the first is under way
    store.save_transition(key, second)
    # the account page sees both, once each, whatever is committed yet
    assert store.load_transitions(key) == [second, first]
    disk.release()
    await until(lambda: rows(path) == [("a1", None)], "the later row committed")
    assert store.load_transitions(key) == [second, first]
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT time FROM transitions ORDER BY rowid").fetchall() == [
            (1,), (2,)]


async def test_a_failed_commit_is_counted_kept_and_retried(tmp_path, disk):
    path = tmp_path / "agent.db"
    store = StateStore(path, flush_delay=0.01)
    failures = []
    store.on_write_failure = lambda: failures.append(1)
    disk.fail = 1
    disk.hold()
    store.save_account(checked("a1", "timeout"))
    await until(disk.entered.is_set, "the commit started")
    store.save_account(checked("a2", "timeout"))  # pending meanwhile
    disk.release()
    await until(lambda: rows(path) == [("a1", "timeout"), ("a2", "timeout")],
                "both rows committed by the retry")
    assert store.write_failures == 1 and failures == [1]
    store.close()


async def test_a_row_written_after_a_failed_commit_wins_over_the_kept_one(tmp_path, disk):
    path = tmp_path / "agent.db"
    store = StateStore(path, flush_delay=0.01)
    disk.fail = 1
    disk.hold()
    store.save_account(checked("a1", "timeout"))
    await until(disk.entered.is_set, "the commit started")
    store.save_account(checked("a1", None, now=200))
    disk.release()
    await until(lambda: store.write_failures == 1, "the failure taken in")
    await until(lambda: rows(path) == [("a1", None)], "the newer row committed")
    store.close()
    assert rows(path) == [("a1", None)]


def test_close_drains_the_commit_under_way_and_the_pending_writes(tmp_path, disk):
    path = tmp_path / "agent.db"

    async def write() -> StateStore:
        store = StateStore(path, flush_delay=0.01)
        disk.hold()
        store.save_account(checked("a1", "timeout"))
        await until(disk.entered.is_set, "the commit started")
        store.save_account(checked("a2", "timeout"))  # pending behind it
        return store

    store = asyncio.run(write())
    # the loop is gone with its callbacks; close() still waits for the commit under way
    releaser = threading.Thread(target=lambda: (time.sleep(0.05), disk.release()))
    releaser.start()
    store.close()
    releaser.join()
    assert rows(path) == [("a1", "timeout"), ("a2", "timeout")]


@pytest.fixture
async def agent(tmp_path, disk):
    service = make_service(tmp_path, SOURCES, DATASETS)
    service.freshness.clock = time.time
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    yield service, client
    disk.release()
    await client.close()
    await service.stop()


async def test_a_heartbeat_is_answered_only_once_on_disk(agent, disk, tmp_path):
    service, client = agent
    disk.hold()
    posted = asyncio.create_task(client.post("/api/v1/freshness", json=GOOD))
    await until(disk.entered.is_set, "the heartbeat's commit started")
    # meanwhile the agent answers others, and this heartbeat is not answered
    assert (await client.get("/-/healthy")).status == 200
    assert not posted.done()
    assert freshness_rows(tmp_path / "agent.db") == {}
    disk.release()
    response = await posted
    assert response.status == 204
    assert freshness_rows(tmp_path / "agent.db") == {"a1": 1795752000.0}


async def test_heartbeats_whose_commit_failed_get_503_and_are_stored_by_the_retry(
        agent, disk, tmp_path):
    service, client = agent
    disk.fail = 1
    batch = {"heartbeats": [{**GOOD, "account": name} for name in ("a1", "a2")]}
    response = await client.post("/api/v1/freshness/batch", json=batch)
    assert response.status == 503
    assert "not stored" in (await response.json())["error"]
    assert service.metrics.registry.get_sample_value(
        "channel_agent_state_write_failures_total") == 1
    # kept and retried: on disk without being posted again
    await until(lambda: len(freshness_rows(tmp_path / "agent.db")) == 2, "the retry")
    # posting them again is answered (they are on disk)
    response = await client.post("/api/v1/freshness/batch", json=batch)
    assert response.status == 200
    assert await response.json() == {"accepted": 2, "refused": []}


async def test_an_unchanged_heartbeat_still_waits_for_its_pending_write(agent, disk, tmp_path):
    service, client = agent
    disk.fail = 1
    assert (await client.post("/api/v1/freshness", json=GOOD)).status == 503
    disk.hold()  # the retry of the kept write waits for the disk
    posted = asyncio.create_task(client.post("/api/v1/freshness", json=GOOD))
    await until(disk.entered.is_set, "the retry started")
    assert (await client.get("/-/healthy")).status == 200
    assert not posted.done()  # same value, but not on disk yet: not acknowledged
    disk.release()
    assert (await posted).status == 204
    assert freshness_rows(tmp_path / "agent.db") == {"a1": 1795752000.0}


async def test_a_write_after_close_is_refused_not_retried_forever(tmp_path, disk):
    store = StateStore(tmp_path / "agent.db", flush_delay=0.01)
    store.close()
    store.save_account(checked("a1", "timeout"))  # e.g. a check that ended during the stop
    await asyncio.sleep(0.05)
    assert store.write_failures == 0
    with pytest.raises(StateWriteError):
        await store.durable()

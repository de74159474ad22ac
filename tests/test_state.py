import asyncio
import sqlite3

from agent.channel import CheckResult
from agent.state import AccountState, StateStore


def _state() -> AccountState:
    return AccountState(channel="fake", account="a1", region="na")


def test_transient_result_keeps_last_conclusive_validity():
    state = _state()
    state.apply(CheckResult(valid=False, reason="invalid_grant"), now=100)
    state.apply(CheckResult(valid=None, reason="throttled"), now=200)
    assert state.valid is False
    assert state.check_success is False
    assert state.reason == "throttled"
    assert state.last_check == 200
    assert state.failures_total == 2


def test_valid_result_sets_last_valid_and_clears_reason():
    state = _state()
    state.apply(CheckResult(valid=None, reason="timeout"), now=100)
    state.apply(CheckResult(valid=True), now=150)
    assert (state.valid, state.check_success, state.reason) == (True, True, None)
    assert state.last_valid == 150


def test_refresh_token_issued_is_first_seen_until_a_grant_is_recorded():
    state = _state()
    state.apply(CheckResult(valid=True, refresh_token_fingerprint="aaa"), now=100)
    state.apply(CheckResult(valid=True, refresh_token_fingerprint="aaa"), now=200)
    assert state.refresh_issued == 100
    state.apply(CheckResult(valid=True, refresh_token_fingerprint="bbb"), now=300)
    assert state.refresh_issued == 300
    state.record_grant("ccc", granted_at=400)
    assert (state.refresh_fingerprint, state.refresh_issued, state.reconnected) == ("ccc", 400, 400)


def test_store_round_trip_survives_reopen(tmp_path):
    path = tmp_path / "sub" / "agent.db"
    store = StateStore(path)
    state = _state()
    state.apply(CheckResult(valid=True, profiles={"123": True, "456": False},
                            refresh_token_fingerprint="abc"), now=100)
    state.apply(CheckResult(valid=None, reason="server_error"), now=200)
    store.save_account(state)
    store.save_client_validity("fake", False)
    store.close()

    reopened = StateStore(path)
    restored = reopened.load_accounts()[("fake", "a1")]
    assert restored.valid is True
    assert restored.check_success is False
    assert restored.reason == "server_error"
    assert restored.last_valid == 100
    assert restored.profiles == {"123": True, "456": False}
    assert restored.refresh_fingerprint == "abc"
    assert reopened.load_client_validity() == {"fake": False}
    integrity = reopened._db.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"


def _rows(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT account, reason FROM accounts ORDER BY account").fetchall()


async def test_writes_in_a_running_loop_are_committed_together(tmp_path):
    path = tmp_path / "agent.db"
    store = StateStore(path, flush_delay=0.05)
    for name in ("a1", "a2", "a3"):
        state = AccountState(channel="fake", account=name, region="na")
        state.apply(CheckResult(valid=None, reason="timeout"), now=100)
        store.save_account(state)
    assert _rows(path) == []  # not committed yet
    await asyncio.sleep(0.2)
    assert _rows(path) == [("a1", "timeout"), ("a2", "timeout"), ("a3", "timeout")]
    state.apply(CheckResult(valid=True), now=200)
    store.save_account(state)
    store.close()  # commits what is pending
    assert _rows(path)[-1] == ("a3", None)

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


def test_a_version_1_file_is_migrated_and_keeps_its_accounts(tmp_path):
    import sqlite3

    from agent.state import _SCHEMA_V1, SCHEMA_VERSION, DataFreshness, read_freshness

    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO accounts (channel, account, region, valid, last_valid) "
               "VALUES ('fake', 'a1', 'na', 1, 100)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    assert read_freshness(path) == {}  # an old file: nothing to read, no error

    store = StateStore(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert store.load_accounts()[("fake", "a1")].last_valid == 100
    value = DataFreshness("fake", "a1", "orders", last_updated=1.7e9, source="pipeline",
                          recorded=1.7e9 + 5)
    store.save_freshness(value)
    store.close()
    reopened = StateStore(path)
    assert reopened.load_freshness() == {value.key: value}
    assert read_freshness(path) == {value.key: value}  # read-only, beside a running agent
    reopened.close()
    assert read_freshness(tmp_path / "missing.db") == {}

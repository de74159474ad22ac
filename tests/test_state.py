import asyncio
import sqlite3

from agent.channel import CheckResult
from agent.storage.schema import SCHEMA_VERSION
from agent.storage.state import (
    AccountState,
    Grant,
    ReconnectLink,
    StateStore,
)


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
    # a reconnect's token: its age starts at the grant, whether the grant is seen before or
    # after the first check that uses the token
    state.apply(CheckResult(valid=True, refresh_token_fingerprint="ccc"), now=500,
                grant=Grant("ccc", granted=400, reconnected=410))
    assert (state.refresh_fingerprint, state.refresh_issued, state.reconnected) == ("ccc", 400, 410)
    state.apply(CheckResult(valid=True, refresh_token_fingerprint="ccc"), now=600,
                grant=Grant("ccc", granted=400, reconnected=410))
    assert state.refresh_issued == 400


def test_a_grant_for_a_token_not_in_use_yet_only_records_the_reconnect():
    state = _state()
    state.apply(CheckResult(valid=False, reason="invalid_grant", refresh_token_fingerprint="old"),
                now=100)
    grant = Grant("new", granted=200, reconnected=210)
    state.apply_grant(grant)  # e.g. the new token still has to be put in an environment variable
    assert (state.refresh_fingerprint, state.refresh_issued, state.reconnected) == ("old", 100, 210)
    state.apply(CheckResult(valid=True, refresh_token_fingerprint="new"), now=900, grant=grant)
    assert (state.refresh_fingerprint, state.refresh_issued) == ("new", 200)


def test_store_round_trip_survives_reopen(tmp_path):
    path = tmp_path / "sub" / "agent.db"
    store = StateStore(path)
    state = _state()
    state.apply(CheckResult(valid=True, targets={"123": True, "456": False},
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
    assert restored.targets == {"123": True, "456": False}
    assert restored.refresh_fingerprint == "abc"
    assert reopened.load_client_validity() == {"fake": False}
    integrity = reopened._db.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"


def test_a_version_1_file_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE accounts (channel TEXT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL,
            valid INTEGER, check_success INTEGER, reason TEXT, detail TEXT NOT NULL DEFAULT '',
            last_check REAL, last_valid REAL, refresh_fingerprint TEXT, refresh_issued REAL,
            access_issued REAL, access_expires REAL, profiles TEXT NOT NULL DEFAULT '{}',
            reconnected REAL, PRIMARY KEY (channel, account));
        CREATE TABLE channels (channel TEXT PRIMARY KEY, client_valid INTEGER);
        INSERT INTO accounts (channel, account, region, valid) VALUES ('fake', 'a1', 'na', 0);
        PRAGMA user_version=1;
    """)
    db.close()
    store = StateStore(path)
    assert store.load_accounts()[("fake", "a1")].valid is False
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
    store.record_grant("fake", "a1", Grant("fp", 1.0, 2.0))
    assert StateStore(path).load_grant("fake", "a1") == Grant("fp", 1.0, 2.0)


def _link(state="s1", account="a1", expires=1000.0):
    return ReconnectLink(state=state, channel="fake", account=account, region="na",
                         redirect_uri="https://agent.example/oauth/callback",
                         code_verifier="v" * 64, consent_url="https://consent.example/?state=s1",
                         created=0.0, expires=expires)


def test_a_link_is_claimed_once_and_a_new_one_replaces_the_open_one(tmp_path):
    store = StateStore(tmp_path / "agent.db")
    assert store.add_link(_link("s1"), now=1) == 0
    assert store.add_link(_link("s2"), now=2) == 1  # the account's older link is withdrawn
    assert store.claim_link("s1", now=3).status == "cancelled"
    assert store.claim_link("unknown", now=3) is None
    assert store.claim_link("s2", now=3).status == "claimed"
    assert store.claim_link("s2", now=4).status == "claimed"  # a second request cannot use it
    store.finish_link("s2", "succeeded", now=5, detail="reconnected")
    assert store.claim_link("s2", now=6).status == "succeeded"
    assert [(link.state, link.status) for link in store.links()] == [
        ("s1", "cancelled"), ("s2", "succeeded")]


def test_an_expired_link_cannot_be_claimed_and_cancel_withdraws_open_links(tmp_path):
    store = StateStore(tmp_path / "agent.db")
    store.add_link(_link("old", account="a1", expires=10), now=0)
    store.add_link(_link("open", account="a2", expires=1000), now=0)
    assert store.claim_link("old", now=11).status == "expired"
    assert store.cancel_links("fake", "a2", now=12) == 1
    assert store.cancel_links("fake", "a2", now=13) == 0
    assert {link.state: link.status for link in store.links()} == {
        "old": "expired", "open": "cancelled"}
    store.purge_links(before=11.5)
    assert [link.state for link in store.links()] == ["open"]


def test_a_version_2_file_gains_the_freshness_table(tmp_path):
    from agent.storage.freshness import DataFreshness, read_freshness
    from agent.storage.schema import MIGRATIONS

    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1] + MIGRATIONS[2])
    db.execute("INSERT INTO accounts (channel, account, region, valid, last_valid) "
               "VALUES ('fake', 'a1', 'na', 1, 100)")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    assert read_freshness(path) == {}  # an old file: nothing to read, no error

    store = StateStore(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
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


def test_a_version_4_file_keeps_the_rejection_its_last_conclusive_check_gave(tmp_path):
    """Schema 5 keeps the reason of the last conclusive rejection apart from the latest
    check's; a file from before it knows that reason only where the last check concluded."""
    from agent.storage.schema import MIGRATIONS

    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript("".join(MIGRATIONS[v] for v in (1, 2, 3)))
    for statement in MIGRATIONS[4].split(";"):
        db.execute(statement)
    db.executemany(
        "INSERT INTO accounts (channel, account, region, valid, check_success, reason) "
        "VALUES ('fake', ?, 'na', ?, ?, ?)",
        [("dead", 0, 1, "invalid_grant"), ("dead-then-timeout", 0, 0, "timeout"),
         ("fine", 1, 1, None)])
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    states = StateStore(path).load_accounts()
    assert {name: state.rejection for (_, name), state in states.items()} == {
        "dead": "invalid_grant", "dead-then-timeout": None, "fine": None}


def test_the_rejection_survives_transient_checks_and_a_restart(tmp_path):
    state = AccountState(channel="fake", account="a1", region="na")
    state.apply(CheckResult(valid=False, reason="profile_missing"), now=1)
    state.apply(CheckResult(valid=None, reason="throttled"), now=2)
    assert (state.reason, state.rejection) == ("throttled", "profile_missing")
    store = StateStore(tmp_path / "agent.db")
    store.save_account(state)
    store.close()
    restored = StateStore(tmp_path / "agent.db").load_accounts()[("fake", "a1")]
    assert restored.rejection == "profile_missing"
    restored.apply(CheckResult(valid=True), now=3)
    assert restored.rejection is None


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


def test_a_new_state_file_is_readable_by_the_agent_only(tmp_path):
    import stat

    path = tmp_path / "agent.db"
    store = StateStore(path)
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

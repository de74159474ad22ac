"""State transitions: recorded when an account's state or reason changes, bounded per account,
kept in the state file, so the account page and the "broken since" order survive a restart."""

from __future__ import annotations

import sqlite3

from agent.channel import CheckResult
from agent.storage.fleet import Fleet
from agent.storage.schema import MIGRATIONS, SCHEMA_VERSION
from agent.storage.state import HISTORY_LIMIT, StateStore

VALID = CheckResult(valid=True)
REVOKED = CheckResult(valid=False, reason="invalid_grant", detail="revoked")
THROTTLED = CheckResult(valid=None, reason="throttled")


def _fleet(store, fake_config, clock):
    fleet = Fleet(store, clock=lambda: clock[0])
    fleet.configure(fake_config(accounts=("a1", "a2")))
    return fleet


def test_transitions_are_recorded_on_change_only_and_survive_a_restart(tmp_path, fake_config):
    clock = [100.0]
    store = StateStore(tmp_path / "agent.db")
    fleet = _fleet(store, fake_config, clock)
    a1 = fleet.accounts[("fake", "a1")]
    for result in (VALID, VALID, REVOKED, REVOKED, THROTTLED, REVOKED, VALID):
        clock[0] += 10
        fleet.record(a1, result)
    expected = [(170.0, "invalid", "valid", None), (160.0, "unverified", "invalid",
                                                     "invalid_grant"),
                (150.0, "invalid", "unverified", "throttled"),
                (130.0, "valid", "invalid", "invalid_grant"), (110.0, "pending", "valid", None)]
    seen = [(t.time, t.from_state, t.to_state, t.reason)
            for t in store.load_transitions(("fake", "a1"))]
    assert seen == expected  # newest first, before the batch is committed too
    store.close()

    reopened = StateStore(tmp_path / "agent.db")
    assert [(t.time, t.from_state, t.to_state, t.reason)
            for t in reopened.load_transitions(("fake", "a1"))] == expected
    assert reopened.load_transitions(("fake", "a2")) == []
    state = reopened.load_accounts()[("fake", "a1")]
    assert (state.state_since, state.broken_since) == (170.0, None)


def test_broken_since_survives_a_restart_and_outlives_a_transient_failure(tmp_path,
                                                                          fake_config):
    clock = [100.0]
    store = StateStore(tmp_path / "agent.db")
    fleet = _fleet(store, fake_config, clock)
    a2 = fleet.accounts[("fake", "a2")]
    fleet.record(a2, VALID)
    clock[0] = 200.0
    fleet.record(a2, REVOKED)
    clock[0] = 300.0
    fleet.record(a2, THROTTLED)  # still broken, since 200
    store.close()
    state = StateStore(tmp_path / "agent.db").load_accounts()[("fake", "a2")]
    assert (state.state_since, state.broken_since) == (300.0, 200.0)


def test_history_keeps_the_newest_transitions_of_each_account(tmp_path, fake_config):
    clock = [0.0]
    store = StateStore(tmp_path / "agent.db")
    fleet = _fleet(store, fake_config, clock)
    a1, a2 = fleet.accounts.values()
    fleet.record(a2, REVOKED)
    for i in range(HISTORY_LIMIT + 20):
        clock[0] = float(i)
        fleet.record(a1, VALID if i % 2 else REVOKED)
        if i % 7 == 0:
            store.flush()
    store.flush()
    history = store.load_transitions(("fake", "a1"))
    assert len(history) == HISTORY_LIMIT
    assert history[0].time == HISTORY_LIMIT + 19 and history[-1].time == 20
    rows = store._db.execute("SELECT account, count(*) FROM transitions GROUP BY account")
    assert dict(rows.fetchall()) == {"a1": HISTORY_LIMIT, "a2": 1}


def test_a_version_4_file_gains_the_history(tmp_path):
    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1] + MIGRATIONS[2] + MIGRATIONS[3] + MIGRATIONS[4])
    db.execute("INSERT INTO accounts (channel, account, region, valid, check_success) "
               "VALUES ('fake', 'a1', 'na', 0, 1)")
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    store = StateStore(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    state = store.load_accounts()[("fake", "a1")]
    assert (state.valid, state.state_since, state.broken_since) == (False, None, None)
    assert store.load_transitions(("fake", "a1")) == []

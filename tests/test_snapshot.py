"""The restore snapshot (agent.storage.snapshot): a start after a clean stop restores the same
accounts, states, data times and inventory lists from it as from the rows, reading no row; a
change of any table it is made from deletes it (triggers, whoever writes); a damaged snapshot
or one of another format is not used; it holds no secret."""

from __future__ import annotations

import logging
import marshal
import sqlite3
from contextlib import closing

import pytest

from agent.channel import CheckResult
from agent.inventory import store as kept
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.storage import freshness, snapshot, state
from tests.fakes import FakeChannel, FakePlugin
from tests.inventory_helpers import Connections, inventory_config

PLANTED = "PLANTED-snapshot-token-7d41"
FILE_TOKEN = "FILE-snapshot-token-03be"


def service(config) -> AgentService:
    return AgentService(config, load_plugins([FakePlugin()], entry_points=False))


@pytest.fixture
def config(tmp_path):
    """An agent's configuration and state file, left by a clean stop: static and inventory
    accounts, checked (valid, invalid, with targets), data times, a withheld token."""
    FakeChannel.reset()
    (tmp_path / "a1.token").write_text(FILE_TOKEN)
    table = Connections(tmp_path / "platform.db")
    table.put({"account": "a1", "label_merchant": "m1", "note": "n1",
               "refresh_token_file": "a1.token"},
              {"account": "a2", "region": "eu", "refresh_token": PLANTED},
              {"account": "a3"})
    config = inventory_config(
        tmp_path, table.url, static=("s1",),
        freshness_sources={"pipe": {"type": "heartbeat"}},
        datasets={"orders": {"source": "pipe", "max_age": "1h"}})
    return config


async def first_run(config) -> None:
    agent = service(config)
    await agent.inventory.refresh("crm")
    agent.apply_inventory()
    accounts = agent.fleet.accounts
    agent.fleet.record(accounts["fake", "a1"], CheckResult(
        valid=True, targets={"111": True, "112": False}, targets_reached=1,
        refresh_token_fingerprint="fp-a1"))
    agent.fleet.record(accounts["fake", "s1"], CheckResult(valid=False, reason="invalid_grant"))
    agent.fleet.record(accounts["fake", "a3"], CheckResult(valid=None, reason="timeout"))
    datasets = agent.freshness.datasets
    agent.freshness.record(datasets["fake", "a1", "orders"], 1_700_000_000.0)
    agent.freshness.record(datasets["fake", "s1", "orders"], 1_700_000_100.5)
    await agent.stop()


def restored(agent: AgentService) -> dict:
    """What a start restored, in comparable form."""
    status = agent.inventory.status["crm"]
    return {"accounts": agent.fleet.accounts, "states": agent.fleet.states,
            "freshness": agent.freshness.values, "inventory": status.accepted,
            "last_success": status.last_success,
            "withheld": sorted(key for key, account in agent.fleet.accounts.items()
                               if agent.scheduler.withheld(account))}


def snapshot_rows(config) -> int:
    with closing(sqlite3.connect(config.agent.state_path)) as db:
        return db.execute("SELECT count(*) FROM restore_snapshot").fetchone()[0]


async def from_rows(config) -> dict:
    """What a start restores from the rows alone (the snapshot deleted first)."""
    with closing(sqlite3.connect(config.agent.state_path)) as db, db:
        db.execute("DELETE FROM restore_snapshot")
    agent = service(config)
    try:
        return restored(agent)
    finally:
        await agent.stop()


async def test_a_start_after_a_clean_stop_restores_the_same_from_the_snapshot(
        config, monkeypatch, caplog):
    await first_run(config)
    assert snapshot_rows(config) == 1
    expected = await from_rows(config)  # its stop writes the snapshot again
    assert expected["states"]["fake", "a1"].targets == {"111": True, "112": False}
    assert expected["states"]["fake", "s1"].rejection == "invalid_grant"
    assert len(expected["freshness"]) == 2 and expected["withheld"] == [("fake", "a2")]
    assert expected["accounts"]["fake", "a1"].settings["note"] == "n1"

    with monkeypatch.context() as patch:
        patch.setattr(state, "state_args", pytest.fail)
        patch.setattr(freshness, "freshness_args", pytest.fail)
        patch.setattr(kept, "load_list", pytest.fail)
        caplog.set_level(logging.INFO)
        caplog.clear()
        agent = service(config)
    assert "restoring from its snapshot" in caplog.text
    assert "restoring from its rows" not in caplog.text
    assert restored(agent) == expected
    assert agent.store.snapshot is None  # later loads (reloads) read the rows
    await agent.stop()


async def test_the_snapshot_writes_what_accounts_repeat_once(config):
    """The kept forms' keys (and regions, label values, where secrets come from) are
    interned when the snapshot is made, so marshal writes each once and refers to it after
    (a fifth of the blob at 50,000 accounts), and the restored accounts share them."""
    await first_run(config)
    with closing(sqlite3.connect(config.agent.state_path)) as db:
        blob = db.execute("SELECT blob FROM restore_snapshot").fetchone()[0]
    assert blob.count(b"settings") == 1  # one form per inventory account: three
    assert blob.count(b"region") == 1
    agent = service(config)
    try:
        accounts = agent.inventory.status["crm"].accepted.accounts
        first, second = (list(accounts[key].settings) for key in (("fake", "a1"), ("fake", "a3")))
        assert first == second and all(a is b for a, b in zip(first, second, strict=True))
    finally:
        await agent.stop()


def test_a_state_file_with_nothing_to_restore_says_nothing(config, caplog):
    caplog.set_level(logging.INFO)
    agent = service(config)
    assert "snapshot" not in caplog.text
    assert agent.fleet.states["fake", "s1"].check_success is None


CHANGES = {
    "accounts": ["INSERT INTO accounts (channel, account, region) VALUES ('fake', 'x', 'na')",
                 "UPDATE accounts SET reason = 'changed' WHERE account = 's1'",
                 "DELETE FROM accounts WHERE account = 'a3'"],
    "freshness": ["INSERT INTO freshness VALUES ('fake', 'a3', 'orders', 5.0, 'pipe', 5.0)",
                  "UPDATE freshness SET last_updated = 7.0 WHERE account = 'a1'",
                  "DELETE FROM freshness WHERE account = 's1'"],
    "inventory_rows": [
        "INSERT INTO inventory_rows (source, channel, account, row) VALUES "
        "('crm', 'fake', 'a9', '{\"account\":\"a9\",\"channel\":\"fake\",\"region\":\"na\"}')",
        "UPDATE inventory_rows SET validated = replace(validated, 'n1', 'n2') "
        "WHERE account = 'a1'",
        "DELETE FROM inventory_rows WHERE account = 'a3'"],
    "inventory_sources": ["INSERT INTO inventory_sources VALUES ('other', 1.0, 1.0)",
                          "UPDATE inventory_sources SET last_success = 3.0",
                          "DELETE FROM inventory_sources WHERE source = 'crm'"],
}


@pytest.mark.parametrize("statement", [s for changes in CHANGES.values() for s in changes])
async def test_any_change_of_a_table_it_is_made_from_deletes_the_snapshot(
        config, statement, caplog):
    await first_run(config)
    with closing(sqlite3.connect(config.agent.state_path)) as db, db:  # another process
        db.execute(statement)
    assert snapshot_rows(config) == 0
    caplog.set_level(logging.INFO)
    caplog.clear()
    agent = service(config)
    assert "has no restore snapshot" in caplog.text
    assert "restoring from its snapshot" not in caplog.text
    after = restored(agent)
    await agent.stop()
    assert after == await from_rows(config)  # the change shows: the rows were read


async def test_the_agents_own_writes_delete_the_snapshot(config):
    await first_run(config)
    agent = service(config)
    agent.fleet.record(agent.fleet.accounts["fake", "a3"], CheckResult(valid=True))
    agent.store.flush()  # the agent's writes are batched
    assert snapshot_rows(config) == 0
    await agent.stop()
    assert snapshot_rows(config) == 1


async def test_a_damaged_snapshot_is_not_used(config, caplog):
    await first_run(config)
    expected = await from_rows(config)
    with closing(sqlite3.connect(config.agent.state_path)) as db, db:
        blob = bytearray(db.execute("SELECT blob FROM restore_snapshot").fetchone()[0])
        blob[len(blob) // 2] ^= 0x01
        db.execute("UPDATE restore_snapshot SET blob = ?", (bytes(blob),))
    caplog.set_level(logging.INFO)
    caplog.clear()
    agent = service(config)
    assert "damaged (its digest does not match)" in caplog.text
    assert restored(agent) == expected
    await agent.stop()


async def test_a_snapshot_of_another_format_is_not_used(config, monkeypatch, caplog):
    await first_run(config)
    expected = await from_rows(config)
    monkeypatch.setattr(snapshot, "FORMAT", "2/other")
    caplog.set_level(logging.INFO)
    caplog.clear()
    agent = service(config)
    assert "of another format" in caplog.text and "restoring from its rows" in caplog.text
    assert restored(agent) == expected
    await agent.stop()


async def test_a_kept_list_from_other_rules_is_restored_from_its_rows(config, tmp_path):
    """The snapshot keeps each row's validated form with the digest of its rules; other
    rules (here: other static labels) send the list through the rows, validated again."""
    await first_run(config)
    relabelled = inventory_config(
        tmp_path, f"sqlite:///{tmp_path / 'platform.db'}", static=("s1",),
        freshness_sources={"pipe": {"type": "heartbeat"}},
        datasets={"orders": {"source": "pipe", "max_age": "1h"}}, labels={"team": "x"})
    agent = service(relabelled)
    assert agent.fleet.accounts["fake", "a1"].labels == {"team": "x", "merchant": "m1"}
    await agent.stop()


async def test_the_snapshot_holds_no_secret(config):
    await first_run(config)
    with closing(sqlite3.connect(config.agent.state_path)) as db:
        blob = db.execute("SELECT blob FROM restore_snapshot").fetchone()[0]
    assert PLANTED.encode() not in blob and FILE_TOKEN.encode() not in blob
    text = repr(marshal.loads(blob))
    assert PLANTED not in text and FILE_TOKEN not in text
    assert "a1.token" in text  # a file's path, not what it holds

"""A restart rebuilds the inventory's accounts from their kept validated forms, without the
account model; a form that does not fit any more, or a file from before forms (schema 7),
falls back to validating the row."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest
from channel_agent_amazon_ads.channel import AmazonAdsChannel

from agent.channel import Secret
from agent.inventory import diff
from agent.inventory import store as kept
from agent.inventory.diff import SourceList, evaluate, restore
from agent.inventory.sql import SqlInventory
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.storage.schema import MIGRATIONS, SCHEMA_VERSION
from agent.storage.state import StateStore
from tests.fakes import FakePlugin
from tests.inventory_helpers import Connections, inventory_config

PLANTED = "PLANTED-restore-token-51c9"
CHANNELS = {"amazon_ads": AmazonAdsChannel}


@pytest.fixture
def validations(monkeypatch):
    """The rows the account model validated (a spy: the real validation still runs)."""
    seen: list[tuple[str, str]] = []
    real = diff.validate_row

    def counting(candidate, **kwargs):
        seen.append(candidate.key)
        return real(candidate, **kwargs)

    monkeypatch.setattr(diff, "validate_row", counting)
    return seen


def ads_source(tmp_path, labels=None) -> SqlInventory:
    db = tmp_path / "platform.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS connections (merchant TEXT, marketplace TEXT, "
                     "profiles TEXT, token_path TEXT, token TEXT, tier TEXT)")
        conn.execute("DELETE FROM connections")
        conn.executemany("INSERT INTO connections VALUES (?, ?, ?, ?, ?, ?)", [
            ("acme", "na", "[111, 112]", "tokens/acme", None, "gold"),
            ("globex", "eu", "221", None, PLANTED, None),
            ("initech", "fe", None, "/abs/initech", None, "silver")])
    query = ("SELECT 'amazon_ads' AS channel, merchant AS account, marketplace AS region, "
             "profiles AS expected_profiles, token_path AS refresh_token_file, "
             "token AS refresh_token, tier AS label_tier FROM connections")
    return SqlInventory("crm", {"url": Secret(f"sqlite:///{db}"), "query": query,
                                "channels": ("amazon_ads",), "interval": 60.0,
                                "timeout": 10.0, "labels": labels or {"team": "ads"}})


async def kept_list(tmp_path, source) -> StateStore:
    """A state file holding ``source``'s list, as a refresh leaves it."""
    store = StateStore(tmp_path / "agent.db")
    outcome = evaluate(source, SourceList(), await source.fetch(), CHANNELS, tmp_path,
                       time.time(), None)
    kept.save_changes(store, "crm", outcome.write, outcome.forget, time.time(), outcome.forms)
    return store


def restored(store, source, tmp_path) -> tuple[SourceList, dict]:
    saved = kept.load_list(store, "crm")
    return restore(source, saved.rows, CHANNELS, tmp_path, forms=saved.forms, keys=saved.keys)


def validated(store, source, tmp_path) -> SourceList:
    """The list as a restore without forms makes it: every row through the model."""
    saved = kept.load_list(store, "crm")
    return restore(source, saved.rows, CHANNELS, tmp_path)[0]


async def test_a_restore_uses_the_validated_forms_and_gives_the_same_accounts(
        tmp_path, validations):
    source = ads_source(tmp_path)
    store = await kept_list(tmp_path, source)
    forms = [form for form, _ in kept.load_list(store, "crm").forms]
    assert all(forms) and not any(PLANTED in form for form in forms)
    validations.clear()

    result, remade = restored(store, source, tmp_path)
    assert validations == [] and remade == {}  # no row went through the model
    assert result.accounts == validated(store, source, tmp_path).accounts
    acme = result.accounts["amazon_ads", "acme"]
    assert acme.settings["expected_profiles"] == [111, 112]
    assert acme.labels == {"team": "ads", "tier": "gold"} and acme.source == "crm"
    assert acme.settings["refresh_token"].path == tmp_path / "tokens" / "acme"
    globex = result.accounts["amazon_ads", "globex"]
    assert globex.settings["refresh_token"].withheld  # the token waits for the source
    assert result.incomplete == {("amazon_ads", "globex")}
    store.close()


async def test_a_form_that_does_not_fit_falls_back_to_validating_its_row(
        tmp_path, validations):
    source = ads_source(tmp_path)
    store = await kept_list(tmp_path, source)
    expected = validated(store, source, tmp_path).accounts
    db = store.connection
    # a plugin's settings changed (a field gone), a form made under other rules, a
    # form that is not what a form holds
    db.execute("UPDATE inventory_rows SET validated = replace(validated, "
               "'\"expected_profiles\"', '\"profiles_of_old\"') WHERE account = 'acme'")
    db.execute("UPDATE inventory_rows SET rules = 'other' WHERE account = 'globex'")
    db.execute("UPDATE inventory_rows SET validated = replace(validated, '\"region\":\"fe\"', "
               "'\"region\":7') WHERE account = 'initech'")
    validations.clear()

    result, remade = restored(store, source, tmp_path)
    assert sorted(validations) == sorted(expected) == sorted(remade)
    assert result.accounts == expected
    kept.save_forms(store, "crm", remade)  # as the runner does: the next restore uses them
    validations.clear()
    assert restored(store, source, tmp_path)[0].accounts == expected
    assert validations == []
    store.close()


async def test_other_static_labels_are_other_rules(tmp_path, validations):
    store = await kept_list(tmp_path, ads_source(tmp_path))
    relabelled = ads_source(tmp_path, labels={"team": "search"})
    validations.clear()
    result, remade = restored(store, relabelled, tmp_path)
    assert len(validations) == len(remade) == 3
    assert result.accounts["amazon_ads", "acme"].labels["team"] == "search"
    store.close()


def service(config) -> AgentService:
    return AgentService(config, load_plugins([FakePlugin()], entry_points=False))


async def test_a_state_file_of_schema_7_is_migrated_and_its_list_restored(
        tmp_path, validations):
    # a file as version 7 left it: the kept list without forms
    path = tmp_path / "agent.db"
    with closing(sqlite3.connect(path)) as db:
        for version in range(1, 8):
            db.executescript(MIGRATIONS[version])
        db.execute("INSERT INTO inventory_sources VALUES ('crm', 1.0, 1.0)")
        db.executemany("INSERT INTO inventory_rows VALUES ('crm', 'fake', ?, ?)", [
            ("a1", '{"account":"a1","channel":"fake","labels":{"merchant":"m1"},'
                   '"note":"n1","region":"na","refresh_token_file":"a1.token"}'),
            ("a2", '{"account":"a2","channel":"fake","region":"eu",'
                   '"refresh_token#withheld":"0123456789ab"}')])
        db.execute("PRAGMA user_version=7")
        db.commit()
    table = Connections(tmp_path / "platform.db")
    table.drop()  # the source is down: only the kept list tells the accounts

    first = service(inventory_config(tmp_path, table.url))
    assert SCHEMA_VERSION == 9
    assert first.store.connection.execute("PRAGMA user_version").fetchone()[0] == 9
    accounts = first.fleet.accounts
    assert sorted(validations) == sorted(accounts) == [("fake", "a1"), ("fake", "a2")]
    assert accounts["fake", "a1"].settings["note"] == "n1"
    assert accounts["fake", "a1"].settings["refresh_token"].path == tmp_path / "a1.token"
    assert first.scheduler.withheld(accounts["fake", "a2"])
    await first.stop()

    validations.clear()  # the forms were kept at the first start: the second needs no model
    second = service(inventory_config(tmp_path, table.url))
    assert validations == []
    assert second.fleet.accounts == accounts
    assert second.scheduler.withheld(second.fleet.accounts["fake", "a2"])
    await second.stop()


def test_the_rules_are_the_same_in_another_process(tmp_path):
    """A digest that changed with every start (a validator's address in a repr) would
    validate every row at every restart."""
    import subprocess
    import sys

    from agent.inventory.validated import rules

    script = ("import sys; from pathlib import Path; "
              "from channel_agent_amazon_ads.channel import AmazonAdsChannel as C; "
              "from agent.inventory.validated import rules; "
              "print(rules(C, (('team', 'ads'),), Path(sys.argv[1])))")
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert other == rules(AmazonAdsChannel, (("team", "ads"),), tmp_path)

"""The ``sql`` inventory source against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from channel_agent_amazon_ads.channel import AmazonAdsChannel

from agent.channel import Secret
from agent.inventory import InventoryError
from agent.inventory.diff import SourceList, evaluate
from agent.inventory.sql import SqlInventory

CHANNELS = {"amazon_ads": AmazonAdsChannel}
PLANTED = "PLANTED-sql-inventory-token"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'platform.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("DROP TABLE IF EXISTS connections"))
        db.execute(sa.text(
            "CREATE TABLE connections (id INTEGER, merchant TEXT, marketplace TEXT, "
            "profiles TEXT, token_path TEXT, token TEXT, tier TEXT, active INTEGER)"))
        db.execute(sa.text("INSERT INTO connections VALUES "
                           "(1, 'acme', 'na', '[111, 112]', 'acme.token', NULL, 'gold', 1), "
                           "(2, 'globex', 'eu', '221,222', NULL, :token, NULL, 1), "
                           "(3, 'initech', 'mars', '3', 'initech.token', NULL, NULL, 1), "
                           "(4, 'gone', 'na', '4', 'gone.token', NULL, NULL, 0)"),
                   {"token": PLANTED})
    yield url
    engine.dispose()


QUERY = ("SELECT 'amazon_ads' AS channel, merchant AS account, marketplace AS region, "
         "profiles AS expected_profiles, token_path AS refresh_token_file, "
         "token AS refresh_token, tier AS label_tier, merchant AS label_merchant "
         "FROM connections WHERE active = 1 ORDER BY id")


def source(url: str, query: str = QUERY, timeout: float = 10.0) -> SqlInventory:
    return SqlInventory("crm", {"url": Secret(url), "query": query, "channels": ("amazon_ads",),
                                "interval": 60.0, "timeout": timeout, "labels": {}})


async def test_rows_become_accounts_validated_like_the_configuration_file(database, tmp_path):
    crm = source(database)
    rows = await crm.fetch()
    outcome = evaluate(crm, SourceList(), rows, CHANNELS, tmp_path, time.time(), None)
    accounts = outcome.new.accounts
    assert sorted(accounts) == [("amazon_ads", "acme"), ("amazon_ads", "globex")]
    acme, globex = accounts["amazon_ads", "acme"], accounts["amazon_ads", "globex"]
    assert (acme.region, acme.settings["expected_profiles"]) == ("na", [111, 112])
    assert acme.labels == {"tier": "gold", "merchant": "acme"}
    assert acme.settings["refresh_token"].path == tmp_path / "acme.token"
    assert globex.settings["expected_profiles"] == [221, 222]
    assert globex.settings["refresh_token"].read().reveal() == PLANTED
    assert acme.source == "crm"
    [problem] = outcome.problems
    assert str(problem) == ("inventory source crm, row 3 (amazon_ads/initech): region: must be "
                            "one of na, eu, fe")
    assert PLANTED not in outcome.write["amazon_ads", "globex"]  # what the state file gets
    await crm.close()


@pytest.mark.parametrize(("query", "reason", "message"), [
    ("SELECT merchant AS account FROM connections", "bad_response",
     "the query returns no column channel (its columns: account)"),
    ("SELECT nope FROM connections", "query_error", ""),
])
async def test_a_wrong_query_is_an_error_of_the_source(database, query, reason, message):
    crm = source(database, query)
    with pytest.raises(InventoryError) as caught:
        await crm.fetch()
    assert caught.value.reason == reason and message in str(caught.value)
    await crm.close()


async def test_an_unreachable_database_is_unavailable_without_its_password(postgres_url):
    url = sa.make_url(postgres_url).set(port=1, password="PLANTED-db-password")
    crm = source(url.render_as_string(hide_password=False), timeout=2.0)
    with pytest.raises(InventoryError) as caught:
        await crm.fetch()
    assert caught.value.reason == "unavailable"
    assert "PLANTED-db-password" not in str(caught.value)
    assert "PLANTED-db-password" not in crm.describe()
    await crm.close()


async def test_a_slow_query_times_out_and_is_cancelled_on_the_server(postgres_url):
    crm = source(postgres_url, "SELECT 'amazon_ads' AS channel, 'a' AS account "
                               "FROM pg_sleep(30)", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(InventoryError) as caught:
        await crm.fetch()
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 5
    await crm.close()


def _rows(**changes: dict) -> list[dict]:
    rows = [{"channel": "amazon_ads", "account": name, "region": "na",
             "expected_profiles": "1", "refresh_token": f"token-of-{name}",
             "label_tier": "gold"} for name in ("acme", "globex", "initech")]
    for row in rows:
        row.update(changes.get(row["account"], {}))
    return rows


def test_an_answer_as_last_time_keeps_every_account_and_writes_nothing(tmp_path):
    crm = source(f"sqlite:///{tmp_path / 'p.db'}")
    first = evaluate(crm, SourceList(), _rows(), CHANNELS, tmp_path, time.time(), None)
    again = evaluate(crm, first.new, _rows(), CHANNELS, tmp_path, time.time(), None)
    assert not again.changes and not again.write and not again.problems
    assert all(again.new.accounts[key] is first.new.accounts[key] for key in first.new.accounts)
    # the same row with its columns in another order is the same row
    reordered = [dict(reversed(row.items())) for row in _rows()]
    third = evaluate(crm, again.new, reordered, CHANNELS, tmp_path, time.time(), None)
    assert not third.changes and not third.write
    assert third.new.accounts == first.new.accounts


def test_a_change_in_any_column_is_seen_even_when_the_rest_of_the_answer_repeats(tmp_path):
    crm = source(f"sqlite:///{tmp_path / 'p.db'}")
    first = evaluate(crm, SourceList(), _rows(), CHANNELS, tmp_path, time.time(), None)
    changed = evaluate(crm, first.new, _rows(acme={"label_tier": "silver"},
                                             globex={"refresh_token": "rotated"}),
                       CHANNELS, tmp_path, time.time(), None)
    assert changed.changed == 2 and sorted(changed.write) == [("amazon_ads", "acme"),
                                                              ("amazon_ads", "globex")]
    accounts = changed.new.accounts
    assert accounts["amazon_ads", "acme"].labels["tier"] == "silver"
    assert accounts["amazon_ads", "globex"].settings["refresh_token"].read().reveal() == "rotated"
    assert "rotated" not in changed.write["amazon_ads", "globex"]
    assert accounts["amazon_ads", "initech"] is first.new.accounts["amazon_ads", "initech"]


def test_a_row_that_went_bad_is_reported_at_every_answer_until_it_is_fixed(tmp_path):
    crm = source(f"sqlite:///{tmp_path / 'p.db'}")
    first = evaluate(crm, SourceList(), _rows(), CHANNELS, tmp_path, time.time(), None)
    current = first.new
    for _ in range(2):  # the same bad answer twice: reported both times, acme kept
        bad = evaluate(crm, current, _rows(acme={"region": "mars"}), CHANNELS, tmp_path,
                       time.time(), None)
        [problem] = bad.problems
        assert "row 1 (amazon_ads/acme): region" in str(problem)
        assert bad.new.accounts["amazon_ads", "acme"] is first.new.accounts["amazon_ads", "acme"]
        current = bad.new
    fixed = evaluate(crm, current, _rows(acme={"region": "eu"}), CHANNELS, tmp_path,
                     time.time(), None)
    assert not fixed.problems and fixed.new.accounts["amazon_ads", "acme"].region == "eu"

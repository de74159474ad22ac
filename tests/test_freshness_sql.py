"""The ``sql`` freshness source against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from agent.channel import Secret
from agent.freshness import Dataset, SourceError
from agent.freshness.sql import SqlSource

UTC = dt.UTC
T = dt.datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
ACME = Dataset("amazon_ads", "acme-us", "na", "sp_campaigns_daily", "warehouse", 36 * 3600)
NEWEST = ("SELECT max(finished_at) FROM sync_runs WHERE channel = :channel "
          "AND account = :account AND dataset = :dataset AND status = 'ok'")


class Warehouse:
    """A database with a sync_runs table whose finished_at column has a given SQL type."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)

    def create(self, column_type: str) -> None:
        with self.engine.begin() as db:
            db.execute(sa.text("DROP TABLE IF EXISTS sync_runs"))
            db.execute(sa.text(f"CREATE TABLE sync_runs (channel TEXT, account TEXT, "
                               f"dataset TEXT, status TEXT, finished_at {column_type})"))

    def insert(self, *rows: tuple) -> None:
        with self.engine.begin() as db:
            for account, dataset, status, finished_at in rows:
                db.execute(sa.text("INSERT INTO sync_runs VALUES ('amazon_ads', :a, :d, :s, :f)"),
                           {"a": account, "d": dataset, "s": status, "f": finished_at})

    def source(self, query: str = NEWEST, **settings) -> SqlSource:
        return SqlSource("warehouse", {"url": Secret(self.url), "query": query,
                                       "timezone": None, "interval": 600.0, "timeout": 10.0,
                                       **settings})


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Warehouse(url)
    yield db
    db.engine.dispose()


async def latest(source: SqlSource, dataset: Dataset = ACME) -> float | None:
    try:
        return await source.latest(dataset)
    finally:
        await source.close()


# (SQL type per backend, value inserted) -> every one must read back as T
KINDS = {
    "aware datetime": ({"sqlite": "TEXT", "postgresql": "TIMESTAMPTZ"}, T),
    "naive datetime is UTC": ({"sqlite": "TIMESTAMP", "postgresql": "TIMESTAMP"},
                              T.replace(tzinfo=None)),
    "epoch seconds": ({"sqlite": "REAL", "postgresql": "DOUBLE PRECISION"}, T.timestamp()),
    "ISO text": ({"sqlite": "TEXT", "postgresql": "TEXT"}, "2026-11-27 04:00:00"),
}


@pytest.mark.parametrize("kind", KINDS)
async def test_newest_timestamp_of_each_column_type(warehouse, kind):
    types, value = KINDS[kind]
    warehouse.create(types[warehouse.engine.dialect.name])
    older = value - 3600 if isinstance(value, float) else value
    warehouse.insert(("acme-us", "sp_campaigns_daily", "ok", value),
                     ("acme-us", "sp_campaigns_daily", "ok", older),
                     ("acme-us", "sp_campaigns_daily", "failed", _later(value)),
                     ("acme-us", "sb_campaigns_daily", "ok", _later(value)),
                     ("other", "sp_campaigns_daily", "ok", _later(value)))
    assert await latest(warehouse.source()) == T.timestamp()


def _later(value):
    return value + 86400 if isinstance(value, float) else (
        "2026-11-28 04:00:00" if isinstance(value, str) else value + dt.timedelta(days=1))


async def test_dates_and_naive_times_follow_the_timezone_setting(warehouse):
    warehouse.create("DATE")
    warehouse.insert(("acme-us", "sp_campaigns_daily", "ok", dt.date(2026, 11, 27)))
    berlin = warehouse.source(timezone="Europe/Berlin")
    midnight_berlin = dt.datetime(2026, 11, 26, 23, 0, tzinfo=UTC).timestamp()
    assert await latest(berlin) == midnight_berlin
    assert await latest(warehouse.source()) == dt.datetime(2026, 11, 27, tzinfo=UTC).timestamp()


async def test_no_rows_means_no_data_yet(warehouse):
    warehouse.create("TIMESTAMP")
    assert await latest(warehouse.source()) is None
    query = "SELECT finished_at FROM sync_runs WHERE account = :account"
    assert await latest(warehouse.source(query)) is None


async def test_parameters_are_bound_never_formatted(warehouse):
    warehouse.create("TIMESTAMP")
    warehouse.insert(("acme-us", "sp_campaigns_daily", "ok", T.replace(tzinfo=None)))
    sneaky = Dataset("amazon_ads", "x' OR '1'='1", "na", "sp_campaigns_daily", "warehouse", 1.0)
    assert await latest(warehouse.source(), sneaky) is None


@pytest.mark.parametrize(("query", "reason", "words"), [
    ("SELECT max(finished_at) FROM no_such_table", "query_error", ""),
    ("SELECT finished_at, account FROM sync_runs", "bad_value", "one column"),
    ("SELECT finished_at FROM sync_runs", "bad_value", "several rows"),
    ("SELECT 'soon' FROM sync_runs WHERE account = :account", "bad_value", "not a datetime"),
    ("SELECT true FROM sync_runs WHERE account = :account", "bad_value", "not a datetime"),
])
async def test_bad_queries_and_results_are_errors(warehouse, query, reason, words):
    warehouse.create("TIMESTAMP")
    warehouse.insert(("acme-us", "sp_campaigns_daily", "ok", T.replace(tzinfo=None)),
                     ("other", "sp_campaigns_daily", "ok", T.replace(tzinfo=None)))
    with pytest.raises(SourceError) as info:
        await latest(warehouse.source(query))
    assert info.value.reason == reason and words in str(info.value)


async def test_unreachable_database_is_unavailable(tmp_path):
    from tests.helpers import free_port

    for url in (f"postgresql://agent@127.0.0.1:{free_port()}/postgres",
                f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"):
        with pytest.raises(SourceError) as info:
            await latest(Warehouse(url).source())
        assert info.value.reason == "unavailable"


async def test_a_slow_query_times_out_and_is_cancelled_on_the_server(warehouse):
    slow = {
        "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                  "WHERE i < 10000000000) SELECT max(i) FROM n",
        "postgresql": "SELECT extract(epoch FROM now()) + pg_sleep(600)::text::int",
    }[warehouse.engine.dialect.name]
    source = warehouse.source(slow, timeout=0.3)
    with pytest.raises(SourceError) as info:
        await source.latest(ACME)
    assert info.value.reason == "timeout"
    # the interrupted query gives its connection back to the pool (else it would run on)
    for _ in range(100):
        if source._engine.pool.checkedout() == 0:
            break
        await asyncio.sleep(0.1)
    assert source._engine.pool.checkedout() == 0
    await source.close()

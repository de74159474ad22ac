"""The sql secret store against real PostgreSQL: a platform's own connections table."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from agent.channel import Secret
from agent.secrets.base import StoreUnavailable, WriteConflict
from agent.secrets.sql import SqlSettings, SqlStore
from tests.helpers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def table(postgres_url):
    name = f"connections_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE TABLE {name} (account_key TEXT PRIMARY KEY, "
                           f"refresh_token TEXT)"))
        db.execute(sa.text(f"INSERT INTO {name} VALUES ('acme', 'tok-sql-acme'), "
                           f"('beta', 'tok-sql-beta'), ('empty', NULL)"))
    yield name, engine
    with engine.begin() as db:
        db.execute(sa.text(f"DROP TABLE {name}"))
    engine.dispose()


def make(url: str, table: str, **settings) -> SqlStore:
    return SqlStore("platform", SqlSettings(
        url=url,
        read_query=f"SELECT account_key, refresh_token FROM {table} WHERE account_key IN :keys",
        write_query=f"UPDATE {table} SET refresh_token = :value WHERE account_key = :key "
                    f"AND refresh_token IS NOT DISTINCT FROM :old_value", **settings))


async def test_reads_a_batch_in_one_query(postgres_url, table):
    store = make(postgres_url, table[0])
    answers = await store.read(["acme", "beta", "empty", "gone", "x'); DROP TABLE t; --"])
    assert answers["acme"].value == Secret("tok-sql-acme")
    assert answers["beta"].value == Secret("tok-sql-beta")
    assert answers["empty"] is None and answers["gone"] is None
    assert answers["x'); DROP TABLE t; --"] is None  # bound, never formatted
    await store.close()


async def test_write_back_is_compare_and_set(postgres_url, table):
    name, engine = table
    store = make(postgres_url, name)
    read = (await store.read(["acme"]))["acme"]
    await store.write("acme", Secret("tok-sql-rotated"), read)
    assert (await store.read(["acme"]))["acme"].value == Secret("tok-sql-rotated")
    with engine.begin() as db:  # the platform's pipeline rotates meanwhile
        db.execute(sa.text(f"UPDATE {name} SET refresh_token = 'tok-pipeline' "
                           f"WHERE account_key = 'acme'"))
    with pytest.raises(WriteConflict):
        await store.write("acme", Secret("tok-agent-late"), read)
    assert (await store.read(["acme"]))["acme"].value == Secret("tok-pipeline")
    await store.close()


def test_only_bind_parameters():
    with pytest.raises(ValueError, match=":keys"):
        SqlSettings(url="sqlite://", read_query="SELECT k, v FROM t WHERE k = :key")
    with pytest.raises(ValueError, match=":old_value"):
        SqlSettings(url="sqlite://", read_query="SELECT k, v FROM t WHERE k IN :keys",
                    write_query="UPDATE t SET v = :value WHERE k = :key")


async def test_database_down_is_unavailable():
    store = make(f"postgresql://nobody:pw@127.0.0.1:{free_port()}/x", "t", timeout="2s")
    with pytest.raises(StoreUnavailable) as caught:
        await store.read(["acme"])
    assert "pw" not in str(caught.value)
    await store.close()

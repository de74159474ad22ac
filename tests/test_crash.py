"""SIGKILL at random moments: nothing committed is lost, nothing is left half-written.

Two crash cases, each a loop of kills (a handful by default; CHANNEL_AGENT_LONG_TESTS=1 makes
it CRASH_KILLS_LONG each; CHANNEL_AGENT_CRASH_SEED=N replays a run):

- the agent process during check cycles (many accounts, a check every few hundred
  milliseconds, so SQLite commits all the time), alone and under a stream of heartbeats
  (``POST /api/v1/freshness``): after each kill the state file passes
  ``PRAGMA integrity_check``, every row committed before the kill is still there and no older,
  every heartbeat the agent acknowledged (204) is stored, and the next start of the agent
  opens the file and serves the restored state;
- a process rotating a refresh token file with ``write_secret_file`` as fast as it can (what
  the agent does when Amazon returns a new refresh token, and what a reconnect does): after
  each kill the file holds one complete token, at least the last one acknowledged, and the
  previous token's backup exists, complete;
- the same through a secret store (SQL, compare-and-set write-back): the store holds one
  complete token, at least the last acknowledged;
- ``reconnect`` killed between receiving the new token and storing it in a secret store
  (OpenBao): the store still holds the old token, untouched, and no grant is recorded.

More load on the agent is one more entry in ``AGENT_WORKLOADS``: a function that drives the
running agent until its stop event is set and notes in ``acknowledged`` what the agent
confirmed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread

from tests.fake_browser import consent
from tests.helpers import Agent, free_port, write_sim_config
from tests.secret_servers import ROOT_TOKEN, openbao  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

LONG = os.environ.get("CHANNEL_AGENT_LONG_TESTS") == "1"
CRASH_KILLS = 4
CRASH_KILLS_LONG = 50
KILLS = CRASH_KILLS_LONG if LONG else CRASH_KILLS
SEED = int(os.environ.get("CHANNEL_AGENT_CRASH_SEED") or random.randrange(2**32))
# Columns that only ever grow for a given row: a kill must never take them back.
MONOTONIC_COLUMNS = {("accounts", "last_check"), ("freshness", "last_updated")}
SCENARIOS = {f"acct-{i:02d}": (("na", "eu", "fe")[i % 3],
                               ("healthy", "revoked", "server_error", "forbidden")[i % 4])
             for i in range(24)}
FRESHNESS = {"freshness_sources": {"pipeline": {"type": "heartbeat"}},
             "datasets": {"orders": {"source": "pipeline", "max_age": "1d"}}}

# (table, primary key) -> {column: the least value the agent confirmed}
Acknowledged = dict[tuple[str, tuple], dict[str, float]]
Workload = Callable[[Agent, threading.Event, Acknowledged], None]


def scheduled_checks_only(agent: Agent, stop: threading.Event, acked: Acknowledged) -> None:
    """No load beyond the agent's own check cycles."""


def heartbeats(agent: Agent, stop: threading.Event, acked: Acknowledged) -> None:
    """Heartbeats for every account in turn, each newer than the last, as fast as answered."""
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            for account in SCENARIOS:
                key = ("amazon_ads", account, "orders")
                synced = round(time.time(), 3)
                try:
                    response = client.post(agent.url + "/api/v1/freshness", json={
                        "channel": key[0], "account": key[1], "dataset": key[2],
                        "last_updated": synced})
                except httpx.HTTPError:
                    return  # killed
                if response.status_code == 204:
                    acked[("freshness", key)] = {"last_updated": synced}


AGENT_WORKLOADS = [
    pytest.param(scheduled_checks_only, id="check-cycles"),
    pytest.param(heartbeats, id="check-cycles-and-heartbeats"),
]


@pytest.fixture
def rng():
    print(f"crash seed {SEED} (CHANNEL_AGENT_CRASH_SEED={SEED} replays it)")
    return random.Random(SEED)


def committed_rows(db: Path) -> dict[tuple[str, tuple], dict]:
    """Every row of every table, by (table, primary key), as a new reader sees them."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = {}
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            info = connection.execute(f"PRAGMA table_info({table})").fetchall()
            columns = [column[1] for column in info]
            key = [column[1] for column in sorted(info, key=lambda c: c[5]) if column[5]]
            for values in connection.execute(f"SELECT * FROM {table}"):
                row = dict(zip(columns, values, strict=True))
                rows[(table, tuple(row[k] for k in key))] = row
        return rows
    finally:
        connection.close()


def integrity(db: Path) -> str:
    connection = sqlite3.connect(db)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


def lost_or_older(before: dict, after: dict) -> list[str]:
    """What ``before`` (rows seen committed, or acknowledged values) has that ``after``
    lost or took back."""
    problems = []
    for (table, key), row in before.items():
        now = after.get((table, key))
        if now is None:
            problems.append(f"{table} {key}: committed row lost")
            continue
        for column_table, column in MONOTONIC_COLUMNS:
            if column_table == table and column in row and (row[column] or 0) > (
                    now[column] or 0):
                problems.append(f"{table} {key}: {column} went back")
    return problems


@pytest.mark.parametrize("workload", AGENT_WORKLOADS)
def test_agent_killed_during_check_cycles(tmp_path, rng, workload: Workload):
    sim = Simulator()
    db = tmp_path / "var" / "agent.db"
    survived = acknowledged = 0
    with SimulatorThread(sim):
        config = write_sim_config(tmp_path, sim, sim.client_secret, SCENARIOS, FRESHNESS,
                                  check_interval="300ms", check_timeout="250ms")
        for _ in range(KILLS):
            agent = Agent(config, free_port(), tmp_path / "agent.log")
            agent.start()  # opens what the previous kill left, restores it, becomes ready
            assert agent.status()["agent"]["ready"] is True
            stop, acked = threading.Event(), {}
            load = threading.Thread(target=workload, args=(agent, stop, acked), daemon=True)
            load.start()
            time.sleep(rng.uniform(0.2, 1.2))
            before = committed_rows(db)
            assert any(table == "accounts" for table, _ in before)  # checks were committing
            agent.proc.kill()
            agent.proc.wait(timeout=10)
            stop.set()
            load.join(timeout=10)
            assert integrity(db) == "ok"
            after = committed_rows(db)
            assert lost_or_older(before, after) == []
            assert lost_or_older(acked, after) == []
            survived += 1
            acknowledged += len(acked)
        checked = {row["account"] for (table, _), row in committed_rows(db).items()
                   if table == "accounts" and row.get("last_check")}
        final = Agent(config, free_port(), tmp_path / "agent.log")
        final.start()
        restored = final.status()["accounts"]
        final.stop()
    # Every account whose check was committed before the last kill comes back checked. (Not
    # "every account": on a loaded machine an account's first check may not come before a kill.)
    assert checked and checked <= {a["account"] for a in restored if a["last_check"]}
    print(f"agent survived {survived} SIGKILLs ({workload.__name__}; "
          f"{acknowledged} acknowledged values found stored after the kills)")


WRITER = """
import sys
from pathlib import Path
from agent.channel import Secret
from agent.storage.secretfile import write_secret_file
path, i = Path(sys.argv[1]), int(sys.argv[2])
print("started", flush=True)
while True:
    i += 1
    write_secret_file(path, Secret(sys.argv[3].format(i)))
    print(i, flush=True)
"""
TOKEN = "Atzr|crash-{:08d}-" + "x" * 400


def token_index(text: str) -> int:
    """The index of the complete token ``text`` holds; AssertionError if it holds none."""
    body = text.removesuffix("\n")
    index = int(body[len("Atzr|crash-"):][:8]) if body.startswith("Atzr|crash-") else -1
    assert index >= 0 and body == TOKEN.format(index) and text.endswith("\n"), (
        f"not one complete token: {text[:40]!r}... ({len(text)} characters)")
    return index


def test_token_file_killed_mid_rotation(tmp_path, rng):
    path = tmp_path / "acme.refresh_token"
    path.write_text(TOKEN.format(0) + "\n")
    current = 0
    for _ in range(KILLS):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(current), TOKEN],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "started\n"
        time.sleep(rng.uniform(0.0, 0.3))
        writer.kill()
        acknowledged = [int(line) for line in writer.communicate(timeout=10)[0].split()]
        current = token_index(path.read_text())
        assert current >= max(acknowledged, default=0)  # nothing acknowledged is lost
        backups = {token_index(b.read_text()) for b in tmp_path.glob(f"{path.name}.*.bak")}
        assert current == 0 or current - 1 in backups  # the previous token is kept
    print(f"token file survived {KILLS} SIGKILLs; {current} rotations")


STORE_WRITER = """
import asyncio, sys
from agent.channel import Secret
from agent.secrets.sql import SqlSettings, SqlStore
from agent.secrets.registry import SecretStores
url, table, i, template = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = SqlStore("db", SqlSettings(
    url=url, read_query=f"SELECT k, v FROM {table} WHERE k IN :keys",
    write_query=f"UPDATE {table} SET v = :value WHERE k = :key "
                f"AND v IS NOT DISTINCT FROM :old_value"))
stores = SecretStores({"db": store})
ref = stores.ref("db", "acme", "crash")
async def main(i):
    await stores.prefetch([ref])
    print("started", flush=True)
    while True:
        i += 1
        await stores.write(ref, Secret(template.format(i)))  # compare-and-set on the last
        print(i, flush=True)
asyncio.run(main(i))
"""


def test_store_write_back_killed_mid_rotation(postgres_url, rng):
    """What the write-back does with a rotated token, killed at random moments: the store
    always holds one complete token, at least the last one acknowledged as stored."""
    import sqlalchemy as sa

    table = f"crash_{random.randrange(16**8):08x}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE TABLE {table} (k TEXT PRIMARY KEY, v TEXT)"))
        db.execute(sa.text(f"INSERT INTO {table} VALUES ('acme', :v)"), {"v": TOKEN.format(0)})
    current = 0
    for _ in range(KILLS):
        writer = subprocess.Popen([sys.executable, "-c", STORE_WRITER, postgres_url, table,
                                   str(current), TOKEN], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "started\n"
        time.sleep(rng.uniform(0.0, 0.3))
        writer.kill()
        acknowledged = [int(line) for line in writer.communicate(timeout=10)[0].split()]
        with engine.begin() as db:
            current = token_index(db.execute(sa.text(f"SELECT v FROM {table}")).scalar() + "\n")
        assert current >= max(acknowledged, default=0)
    engine.dispose()
    print(f"SQL store survived {KILLS} SIGKILLs; {current} rotations")


# The reconnect CLI stopped inside the secret store's write, after the provider handed over
# the new token and before the store has it: the test kills it there.
RECONNECT_PAUSED_IN_STORE = """
import sys, time
from pathlib import Path
from agent.secrets.vault import VaultStore
marker = sys.argv[1]
async def write(self, key, value, previous):
    Path(marker).write_text(key)
    time.sleep(600)
VaultStore.write = write
sys.argv = ["channel-agent", *sys.argv[2:]]
from agent.cli import main
main()
"""


def test_reconnect_killed_between_receiving_the_token_and_storing_it(tmp_path, openbao):  # noqa: F811
    sim = Simulator(client_secret="sim-secret-for-crash")
    account = SimAccount.create("crash-eu", "eu", [4001], "revoked")
    sim.add_account(account)
    old = account.refresh_token
    key = f"crash-{random.randrange(16**8):08x}/crash-eu"
    headers = {"X-Vault-Token": ROOT_TOKEN}
    httpx.post(f"{openbao.url}/v1/secret/data/{key}", json={"data": {"refresh_token": old}},
               headers=headers).raise_for_status()
    (tmp_path / "client_secret").write_text(sim.client_secret + "\n")
    (tmp_path / "bao-token").write_text(ROOT_TOKEN + "\n")
    thread = SimulatorThread(sim)
    thread.start()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "agent": {"state_path": "agent.db", "check_interval": "1h", "check_timeout": "4s"},
        "secret_stores": {"bao": {"type": "vault", "address": openbao.url,
                                  "token_file": "bao-token"}},
        "channels": {"amazon_ads": {
            "client_id": sim.client_id, "client_secret_file": "client_secret",
            "endpoints": sim.endpoints(),
            "accounts": [{"name": "crash-eu", "region": "eu", "expected_profiles": [4001],
                          "refresh_token": f"bao:{key}"}]}}}))
    marker = tmp_path / "in-store.marker"
    try:
        run = subprocess.Popen(
            [sys.executable, "-c", RECONNECT_PAUSED_IN_STORE, str(marker), "reconnect",
             "amazon_ads", "--account", "crash-eu", "--no-browser", "--config", str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        run.stdin.write(consent(run.stdout.readline().strip(), "crash-eu") + "\n")
        run.stdin.flush()
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert run.poll() is None, run.stderr.read()
            assert time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
        run.communicate(timeout=10)
    finally:
        thread.stop()
    stored = httpx.get(f"{openbao.url}/v1/secret/data/{key}", headers=headers).json()["data"]
    assert stored["data"] == {"refresh_token": old} and stored["metadata"]["version"] == 1
    assert sim.account("crash-eu").refresh_token != old  # the new token existed, and is lost
    db = tmp_path / "agent.db"
    if db.exists():  # no grant recorded for a token that was never stored
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM accounts WHERE reconnected IS NOT NULL"
                                ).fetchone()[0] == 0

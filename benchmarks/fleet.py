"""The benchmark's fleet: N Amazon Ads accounts with their token files, D data sets each.

:func:`build_fleet` is the one place that decides how the agent learns about the accounts:
as a platform with 50,000 merchant connections does, from an inventory source (issue 13): a
``connections`` table in a SQLite database beside the agent, read by a ``sql`` source every
minute (the default interval). The configuration file holds the channel-level settings
(client, endpoints, data sets) and the source; no account.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import yaml

CLIENT_ID = "amzn1.application-oa2-client.bench"
CLIENT_SECRET = "bench-client-secret"
REGIONS = ("na", "eu", "fe")
HEARTBEAT_SOURCE = "pipeline"
INVENTORY_SOURCE = "platform"
# what a platform's query looks like: its own column names, renamed to the agent's
QUERY = ("SELECT 'amazon_ads' AS channel, merchant AS account, marketplace AS region, "
         "token_path AS refresh_token_file, tier AS label_tier FROM connections "
         "WHERE active = 1")


def account_name(i: int) -> str:
    return f"acct-{i:06d}"


def refresh_token(i: int) -> str:
    return f"Atzr|bench-{i:06d}-refresh-token"


def dataset_name(j: int) -> str:
    return f"dataset_{j}"


def build_fleet(workdir: Path, n: int, args: argparse.Namespace, sim_url: str,
                check_interval: str) -> Path:
    """Token files, the client secret, the platform's ``connections`` table of ``n`` accounts
    and the agent's configuration (``args.datasets`` heartbeat data sets per account, declared
    channel-wide); returns the configuration's path. The table is made once per work
    directory (a second call, for the restart, changes only the configuration)."""
    secrets = workdir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "client_secret").write_text(CLIENT_SECRET + "\n")
    platform = workdir / "platform.db"
    if not platform.exists():
        for i in range(n):
            token = secrets / f"{account_name(i)}.token"
            if not token.exists():
                token.write_text(refresh_token(i) + "\n")
        make_connections(platform, n)
    channel: dict[str, Any] = {
        "client_id": CLIENT_ID, "client_secret_file": "secrets/client_secret",
        "refresh_interval": "0",  # every check refreshes: a token POST and a profiles GET
        "endpoints": {"token_url": f"{sim_url}/auth/o2/token",
                      "api_url": {r: f"{sim_url}/{r}" for r in REGIONS}},
    }
    if args.datasets:
        # channel-wide: every account gets them (36 h, like daily advertising reports)
        channel["datasets"] = {dataset_name(j): {"source": HEARTBEAT_SOURCE, "max_age": "36h"}
                               for j in range(args.datasets)}
    if args.max_rps:
        channel["max_requests_per_second"] = args.max_rps
    config: dict[str, Any] = {
        "agent": {"state_path": "var/agent.db", "check_interval": check_interval,
                  "check_timeout": args.check_timeout, "max_concurrency": args.concurrency},
        "inventory_sources": {INVENTORY_SOURCE: {
            "type": "sql", "url": f"sqlite:///{platform}", "query": QUERY,
            "channels": ["amazon_ads"], "timeout": "30s"}},
        "channels": {"amazon_ads": channel},
    }
    if args.datasets:
        config["freshness_sources"] = {HEARTBEAT_SOURCE: {"type": "heartbeat"}}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # block style, as people write it
    return path


def on_a_copy_of_the_state(config: Path, name: str) -> Path:
    """A configuration like ``config`` whose state file is a copy of the agent's (made with
    SQLite's backup, so a write-ahead log is included): for in-process phases that open the
    agent's state between its runs. Opening it is a write (the restore snapshot, which a
    clean stop leaves for the next start, is deleted by any change of its tables), so
    without a copy the next start would measure a restore from the rows."""
    data = yaml.safe_load(config.read_text())
    state = config.parent / data["agent"]["state_path"]
    copy = state.with_name(f"{name}.db")
    copy.unlink(missing_ok=True)
    with closing(sqlite3.connect(state)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    data["agent"]["state_path"] = str(copy.relative_to(config.parent))
    path = config.with_name(f"config-{name}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_connections(path: Path, n: int) -> None:
    """The platform's table: one row per merchant connection, its token in a file."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE connections (id INTEGER PRIMARY KEY, merchant TEXT, "
                   "marketplace TEXT, token_path TEXT, tier TEXT, active INT)")
        db.executemany("INSERT INTO connections VALUES (?, ?, ?, ?, ?, 1)", [
            (i, account_name(i), REGIONS[i % 3], f"secrets/{account_name(i)}.token",
             ("gold", "silver", "bronze")[i % 3]) for i in range(n)])


def wait_for_fleet(workdir: Path, n: int, timeout: float = 600.0) -> float:
    """Seconds until the agent took in the inventory's ``n`` accounts (its kept list in the
    state file holds them; the agent applies a list as it keeps it). An agent started with
    no state is ready before its source's first answer; call this after ``/-/ready``."""
    db = workdir / "var" / "agent.db"
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
                kept = conn.execute("SELECT count(*) FROM inventory_rows").fetchone()[0]
        except sqlite3.OperationalError:  # the agent has not made its tables yet
            kept = 0
        if kept >= n:
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"the agent did not take in {n} inventory accounts in {timeout:g}s")


def wait_for_applied(url: str, n: int, timeout: float = 600.0) -> float:
    """Seconds until the agent's fleet holds the ``n`` accounts and its account index lists
    them (``/api/v1/accounts``' summary; a page finishes a rebuild under way). Called after
    :func:`wait_for_fleet`: the first apply of a fleet and the index's rebuild are fleet-sized
    start-up work, which a figure measured after this call leaves out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with urllib.request.urlopen(f"{url}/api/v1/accounts?limit=1", timeout=timeout) as r:
            if json.load(r)["summary"]["accounts"] >= n:
                return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"the agent did not apply and index {n} accounts in {timeout:g}s")


def unchanged_refresh(config: Path) -> dict[str, Any]:
    """The fleet's inventory source refreshed when nothing changed, in this process, from
    the agent's state file (its kept list): rows and seconds. For ``make bench``'s row
    "inventory refresh, unchanged list"."""
    import asyncio

    from agent.config.loader import load_config
    from agent.plugins import load_plugins
    from agent.service import AgentService

    async def measure() -> dict[str, Any]:
        plugins = load_plugins()
        service = AgentService(load_config(config, plugins.channels), plugins)
        try:
            await service.inventory.refresh(INVENTORY_SOURCE)  # warm: the connection pool
            started = time.perf_counter()
            changed = await service.inventory.refresh(INVENTORY_SOURCE)
            seconds = time.perf_counter() - started
            assert not changed
            rows = len(service.inventory.status[INVENTORY_SOURCE].accepted.accounts)
        finally:
            await service.stop()
        return {"rows": rows, "unchanged_s": seconds}

    return asyncio.run(measure())


def simulator_accounts(n: int) -> list[dict[str, Any]]:
    return [{"name": account_name(i), "refresh_token": refresh_token(i),
             "region": REGIONS[i % 3], "profiles": [10_000_000 + i]} for i in range(n)]

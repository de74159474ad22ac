"""The inventory benchmark: a SQL inventory of N rows, refreshed as the agent does it.

    .venv/bin/python benchmarks/inventory.py                 # 10,000 and 50,000 rows
    .venv/bin/python benchmarks/inventory.py --rows 50000

Each size runs in a process of its own (so its memory is its own): a SQLite ``connections``
table of N Amazon Ads accounts (region, expected profiles as a JSON array, a token file,
two labels), an :class:`~agent.inventory.runner.InventoryRunner` with a state file, and:

1. the first refresh: every row read, validated and saved (an agent's first start);
2. an unchanged refresh: read and compared, nothing validated, nothing applied or written;
3. a refresh where 1% of the rows changed (their region) and 1% are new;
4. applying that difference to a running agent (``AgentService.apply_inventory``);
5. a restart: a new ``AgentService``, its accounts restored from the state file's kept list
   (the source is not asked), as ``channel-agent run`` does before it listens: from each
   row's validated form, then again with the forms unusable (the first start after an
   upgrade of the agent or a plugin: every row through the account model, its form rewritten).

Memory: "held" is the resident set after the first refresh minus before it, each measured
once garbage is collected and the C allocator returned its free pages (the accounts, their
settings and labels, the digests the inventory keeps); "peak" is the high-water mark during
the first refresh minus the same starting point (the answer and the accounts at once).
Targets at 50,000 rows: unchanged refresh <= 2 s, <= 100 MB held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

TARGET_SECONDS = 2.0
TARGET_MB = 100.0


def rss_mb(peak: bool = False) -> float:
    """The resident set (VmRSS), or its high-water mark (VmHWM), in MB."""
    field = "VmHWM:" if peak else "VmRSS:"
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1000
    raise RuntimeError("no /proc/self/status")


def held_mb() -> float:
    """VmRSS once garbage is collected and the C allocator gave back its free memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()


def make_table(path: Path, rows: int) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE connections (id INTEGER PRIMARY KEY, merchant TEXT, "
                   "marketplace TEXT, profiles TEXT, token_path TEXT, tier TEXT, active INT)")
        db.executemany("INSERT INTO connections VALUES (?, ?, ?, ?, ?, ?, 1)", [
            (i, f"merchant-{i:06d}", ("na", "eu", "fe")[i % 3], json.dumps([10_000_000 + i]),
             f"tokens/merchant-{i:06d}", ("gold", "silver", "bronze")[i % 3])
            for i in range(rows)])


QUERY = ("SELECT 'amazon_ads' AS channel, merchant AS account, marketplace AS region, "
         "profiles AS expected_profiles, token_path AS refresh_token_file, "
         "tier AS label_tier, merchant AS label_merchant FROM connections WHERE active = 1")


async def one(rows: int) -> dict[str, float]:
    from agent.config.loader import build_config
    from agent.plugins import load_plugins
    from agent.service import AgentService

    plugins = load_plugins()
    with tempfile.TemporaryDirectory(prefix="inventory-bench-") as tmp:
        workdir = Path(tmp)
        db = workdir / "platform.db"
        make_table(db, rows)
        config = build_config({
            "agent": {"state_path": str(workdir / "agent.db"), "check_interval": "1h"},
            "inventory_sources": {"crm": {"type": "sql", "url": f"sqlite:///{db}",
                                          "query": QUERY, "channels": ["amazon_ads"],
                                          "timeout": "30s"}},
            "channels": {"amazon_ads": {"client_id": "bench", "client_secret": "bench"}},
        }, plugins.channels, base_dir=workdir)
        service = AgentService(config, plugins)
        runner = service.inventory
        before = held_mb()
        started = time.perf_counter()
        assert await runner.refresh("crm")
        first = time.perf_counter() - started
        # the loop that resumed this coroutine holds the refresh's answer until its next
        # step (the agent's refresh loop moves on to its sleep): measure after it
        await asyncio.sleep(0)
        peak = rss_mb(peak=True) - before
        memory = held_mb() - before
        service.apply_inventory()
        assert len(service.fleet.accounts) == rows

        started = time.perf_counter()
        assert not await runner.refresh("crm")
        unchanged = time.perf_counter() - started

        step = 100
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("UPDATE connections SET marketplace = 'eu' WHERE id % ? = 0 "
                         "AND marketplace != 'eu'", (step,))
            conn.executemany("INSERT INTO connections VALUES (?, ?, 'na', '[1]', 't', 'new', 1)",
                             [(rows + i, f"new-{i:06d}") for i in range(rows // step)])
        started = time.perf_counter()
        assert await runner.refresh("crm")
        changed = time.perf_counter() - started
        started = time.perf_counter()
        outcome = service.apply_inventory()
        applied = time.perf_counter() - started
        assert len(outcome.added) == rows // step and outcome.changed
        await service.stop()

        started = time.perf_counter()  # a restart: the list comes back from the state file
        restarted = AgentService(config, plugins)
        restore = time.perf_counter() - started
        assert len(restarted.fleet.accounts) == rows + rows // step
        await restarted.stop()

        with closing(sqlite3.connect(workdir / "agent.db")) as conn, conn:
            conn.execute("UPDATE inventory_rows SET rules = 'other'")
        started = time.perf_counter()  # the same, every row validated again
        revalidated = AgentService(config, plugins)
        validating = time.perf_counter() - started
        assert len(revalidated.fleet.accounts) == rows + rows // step
        await revalidated.stop()
    return {"rows": rows, "first": first, "unchanged": unchanged, "changed": changed,
            "apply": applied, "restore": restore, "validating": validating, "memory": memory,
            "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,50000",
                        help="comma-separated inventory sizes (default: 10000,50000)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(one(args.one))))
        return
    results = []
    for rows in (int(n) for n in args.rows.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(rows)], check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out.splitlines()[-1]))
    print("| rows | first refresh | unchanged refresh | 1% changed + 1% new | apply to the "
          "agent | restart: service with the kept list (forms unusable) | memory held | peak "
          "during the first refresh |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['rows']:,} | {r['first']:.2f} s | {r['unchanged']:.2f} s | "
              f"{r['changed']:.2f} s | {r['apply']:.2f} s | {r['restore']:.2f} s "
              f"({r['validating']:.2f} s) | "
              f"{r['memory']:.0f} MB | {r['peak']:.0f} MB |")
    big = max(results, key=lambda r: r["rows"])
    met = big["unchanged"] <= TARGET_SECONDS and big["memory"] <= TARGET_MB
    print(f"\ntargets at {big['rows']:,} rows: unchanged refresh <= {TARGET_SECONDS:g} s, "
          f"memory <= {TARGET_MB:g} MB: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()

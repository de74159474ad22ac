"""Where the agent's memory goes, in process, at N accounts x D data sets: no simulator, no
network, minutes instead of the 20+ of ``benchmarks/run.py`` at 50,000.

    .venv/bin/python benchmarks/memory.py --accounts 50000          # RSS and peak per phase
    .venv/bin/python benchmarks/memory.py --accounts 50000 --trace  # + tracemalloc, by line

The fleet is built as ``benchmarks/run.py`` builds it (``benchmarks/fleet.py``: an SQL
inventory, channel-wide data sets), taken in by the inventory source, then every account gets
what a successful Amazon Ads check records (tokens, one profile) and a heartbeat per data set.
Phases, each with the process's RSS and its peak (``VmHWM``) after it:

1. the service with every account checked and every data set's heartbeat;
2. the exposition's first gzip scrape (every account rendered: ``rebuild_all``);
3. a scrape without gzip (the plain text, taken piece by piece as the server sends it);
4. a cycle: every account changed, then a gzip scrape (re-renders them all);
5. ten more gzip scrapes, a second apart (the ages re-rendered).

``--trace`` runs tracemalloc too (slower, and its own bookkeeping inflates RSS): the traced
peak of each phase and, at the end, the memory held by source line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.fleet import (  # noqa: E402
    INVENTORY_SOURCE,
    account_name,
    build_fleet,
    dataset_name,
)


def memory_mb() -> tuple[float, float]:
    """This process's RSS and peak RSS (VmHWM), in MB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


class Phases:
    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.rows: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        self.cpu = time.process_time()

    def done(self, name: str) -> None:
        gc.collect()
        rss, peak = memory_mb()
        row = {"phase": name, "rss_mb": rss, "peak_mb": peak,
               "seconds": time.perf_counter() - self.started,
               "cpu_s": time.process_time() - self.cpu}
        if self.trace:
            current, traced_peak = tracemalloc.get_traced_memory()
            row |= {"traced_mb": current / 2**20, "traced_peak_mb": traced_peak / 2**20}
            tracemalloc.reset_peak()
        self.rows.append(row)
        print("  ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()), flush=True)
        self.started = time.perf_counter()
        self.cpu = time.process_time()


async def record_checks(service: Any, now: float) -> None:
    """A successful check of every account at ``now``, with a new access token."""
    from agent.channel import CheckResult

    for i, (account, _) in enumerate(list(service.fleet)):
        service.fleet.record(account, CheckResult(
            valid=True, targets={str(10_000_000 + i): True}, targets_reached=1,
            access_token_issued_at=now - 60, access_token_expires_at=now + 3540,
            refresh_token_fingerprint=f"{i:012x}", client_valid=True))
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the store commit its batch


async def fleet_service(workdir: Path, n: int, datasets: int) -> Any:
    """The agent's service with ``n`` accounts taken in from the inventory, each checked
    once (successfully) and with a heartbeat for each of its ``datasets``."""
    from agent.config.loader import load_config
    from agent.plugins import load_plugins
    from agent.service import AgentService

    args = SimpleNamespace(datasets=datasets, max_rps=None, check_timeout="10s",
                           concurrency=200)
    config = build_fleet(workdir, n, args, "http://127.0.0.1:9", "300s")
    plugins = load_plugins()
    service = AgentService(load_config(config, plugins.channels), plugins)
    await service.inventory.refresh(INVENTORY_SOURCE)
    service.apply_inventory()
    now = time.time()
    await record_checks(service, now)
    items = [{"channel": "amazon_ads", "account": account_name(i), "dataset": dataset_name(j),
              "last_updated": now - 3600} for i in range(n) for j in range(datasets)]
    for start in range(0, len(items), 1000):
        refused = service.freshness.heartbeats(items[start:start + 1000])
        assert not refused, refused[:3]
        await asyncio.sleep(0)
    return service


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from agent.metrics.exposition import Exposition

    phases = Phases(args.trace)
    phases.done("imports")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        service = await fleet_service(Path(tmp), args.accounts, args.datasets)
        phases.done("1 service, checked, heartbeats")
        exposition = Exposition(service.metrics.registry)
        gzip_size = len(exposition.render_gzip())
        phases.done(f"2 first gzip scrape ({gzip_size / 2**20:.1f} MB)")
        if hasattr(exposition, "render_parts"):
            size, parts = exposition.render_parts()
            assert sum(len(part) for part in parts) == size
        else:  # before the plain text was streamed
            size = len(exposition.render())
        phases.done(f"3 plain scrape ({size / 2**20:.1f} MB)")
        for state in service.fleet.states.values():  # what a cycle of checks changes
            for field in ("last_check", "last_valid", "access_issued", "access_expires"):
                if getattr(state, field) is not None:
                    setattr(state, field, getattr(state, field) + 300)
        exposition.invalidate()
        exposition.render_gzip()
        phases.done("4 cycle, then a gzip scrape")
        clock = service.fleet.clock
        for k in range(10):
            service.fleet.clock = lambda k=k: clock() + k + 1  # a second later each time
            exposition.render_gzip()
        service.fleet.clock = clock
        phases.done("5 ten more gzip scrapes")
        if args.trace:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            print(f"\nheld now, by line (top {args.top}):")
            for stat in snapshot.statistics("lineno")[:args.top]:
                frame = stat.traceback[0]
                print(f"{stat.size / 2**20:8.1f} MB {stat.count:9,d}  "
                      f"{frame.filename.split('/wt/')[-1]}:{frame.lineno}")
        await service.stop()
        service.store.close()
    return phases.rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--trace", action="store_true", help="tracemalloc as well")
    parser.add_argument("--top", type=int, default=30, help="--trace: lines shown")
    parser.add_argument("--workdir", default=None, help="where the fleet's files go")
    args = parser.parse_args(argv)
    if args.trace:
        tracemalloc.start()
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()

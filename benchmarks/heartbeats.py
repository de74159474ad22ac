"""Heartbeat ingestion alone, at N accounts: ``benchmarks/run.py``'s heartbeat phase without
the rest of the benchmark (minutes instead of the 20+ of a full run at 50,000).

    .venv/bin/python benchmarks/heartbeats.py --accounts 50000
    .venv/bin/python benchmarks/heartbeats.py --accounts 50000 --checks paced --rounds 3
    .venv/bin/python benchmarks/heartbeats.py --accounts 50000 --gc-log --profile hb.txt

As in ``benchmarks/run.py``: the simulator, the agent started with no state, its fleet taken
in from the SQL inventory and, once applied and indexed (its start-up work, timed on its own),
one heartbeat per data set of every account posted in batches,
one request at a time. ``--checks flat`` keeps the check cycle flat out meanwhile (as in
``run.py``, where the heartbeats are posted while the first cycle runs), ``paced`` spreads it
over an hour. Each round posts every data set again with a newer time. Per round: heartbeats
per second, the agent's CPU per heartbeat, the request latency p50/p99/max; with ``--gc-log``
the agent's collections during the rounds (benchmarks/gcwatch.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.fleet import (  # noqa: E402
    account_name,
    build_fleet,
    dataset_name,
    wait_for_applied,
    wait_for_fleet,
)
from benchmarks.run import (  # noqa: E402
    AgentProcess,
    cpu_seconds,
    fresh_workdir,
    log,
    percentile,
    start_simulator,
)

CHECK_INTERVALS = {"flat": "10s", "paced": "1h"}


class WatchedAgent(AgentProcess):
    """The agent under benchmarks/gcwatch.py: its collections logged to ``gc_out``."""

    def __init__(self, config: Path, workdir: Path, profile: Path | None,
                 gc_out: Path | None) -> None:
        super().__init__(config, workdir, profile)
        self.gc_out = gc_out

    def start(self) -> float:
        if self.gc_out is None:
            return super().start()
        import benchmarks.run as run

        real_bin = run.BIN
        wrapper = self.workdir / "bin"
        wrapper.mkdir(exist_ok=True)
        script = wrapper / "channel-agent"
        script.write_text(f"#!/bin/sh\nexec {sys.executable} "
                          f"{Path(__file__).with_name('gcwatch.py')} --out {self.gc_out} -- "
                          f'"$@"\n')
        script.chmod(0o755)
        if self.profile is not None:  # py-spy stays where it is installed
            (wrapper / "py-spy").unlink(missing_ok=True)
            (wrapper / "py-spy").symlink_to(real_bin / "py-spy")
        run.BIN = wrapper
        try:
            return super().start()
        finally:
            run.BIN = real_bin


async def post_round(url: str, items: list[dict[str, Any]], batch: int, pid: int,
                     ) -> dict[str, Any]:
    latencies = []
    async with aiohttp.ClientSession() as session:
        cpu0, started = cpu_seconds(pid), time.monotonic()
        for start in range(0, len(items), batch):
            sent = time.monotonic()
            async with session.post(f"{url}/api/v1/freshness/batch",
                                    json={"heartbeats": items[start:start + batch]}) as r:
                if r.status != 200:
                    raise SystemExit(f"heartbeats refused: {await r.text()}")
            latencies.append(time.monotonic() - sent)
        seconds, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
    return {"started": time.time() - seconds, "ended": time.time(), "count": len(items),
            "per_second": len(items) / seconds, "cpu_ms_per_1000": cpu * 1e6 / len(items),
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "max_ms": max(latencies) * 1000}


def gc_during(path: Path, rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    passes = [line for line in lines if "gen" in line]
    summary = []
    for r in rounds:
        inside = [p for p in passes if r["started"] <= p["at"] <= r["ended"]]
        for line in lines:
            if "slow" in line and r["started"] <= line["at"] <= r["ended"]:
                print(f"  slow callback {line['wall_ms']:.0f} ms (CPU {line['cpu_ms']:.0f}): "
                      f"{line['slow']}")
        row: dict[str, Any] = {}
        for gen in (0, 1, 2):
            of_gen = [p for p in inside if p["gen"] == gen]
            row[f"gen{gen}"] = (len(of_gen), sum(p["cpu_ms"] for p in of_gen),
                                max((p["wall_ms"] for p in of_gen), default=0.0))
        summary.append(row)
    return summary


async def bench(args: argparse.Namespace) -> None:
    n = args.accounts
    workdir = fresh_workdir(args.workdir)
    sim, sim_url = start_simulator(workdir, n, args.latency)
    gc_out = workdir / "gc.jsonl" if args.gc_log else None
    try:
        config = build_fleet(workdir, n, args, sim_url, CHECK_INTERVALS[args.checks])
        agent = WatchedAgent(config, workdir, args.profile, gc_out)
        agent.start()
        rounds = []
        try:
            log(f"inventory: {n} accounts taken {wait_for_fleet(workdir, n):.1f} s after ready")
            log(f"fleet applied and indexed {wait_for_applied(agent.url, n):.1f} s later")
            now = time.time()
            for k in range(args.rounds):
                items = [{"channel": "amazon_ads", "account": account_name(i),
                          "dataset": dataset_name(j), "last_updated": now - 3600 + k}
                         for i in range(n) for j in range(args.datasets)]
                rounds.append(await post_round(agent.url, items, args.batch, agent.pid))
                r = rounds[-1]
                print(f"round {k + 1}: {r['count']} heartbeats, {r['per_second']:,.0f}/s, "
                      f"agent CPU {r['cpu_ms_per_1000']:.1f} ms per 1,000, request p50 "
                      f"{r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} max {r['max_ms']:.1f} ms",
                      flush=True)
        finally:
            agent.stop()
        if gc_out is not None:
            for k, row in enumerate(gc_during(gc_out, rounds)):
                print(f"round {k + 1} collections: " + ", ".join(
                    f"{gen} {count} passes {cpu:.0f} ms CPU, longest {longest:.0f} ms"
                    for gen, (count, cpu, longest) in row.items()))
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checks", choices=sorted(CHECK_INTERVALS), default="flat")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--check-timeout", default="5s")
    parser.add_argument("--max-rps", type=float, default=0)
    parser.add_argument("--gc-log", action="store_true",
                        help="log the agent's collections (benchmarks/gcwatch.py)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the agent with py-spy (raw collapsed stacks) to this file")
    parser.add_argument("--workdir", default="var/bench-heartbeats")
    args = parser.parse_args(argv)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()

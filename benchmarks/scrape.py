"""/metrics during a paced check cycle, in process: what a scrape costs the agent's loop.

    .venv/bin/python benchmarks/scrape.py --accounts 50000            # 20 s, CPU per scrape
    .venv/bin/python benchmarks/scrape.py --accounts 50000 --profile prof.txt   # + cProfile

The fleet is ``benchmarks/memory.py``'s (every account checked, a heartbeat per data set), no
simulator: checks are ``Fleet.record`` calls at ``--checks-per-second`` (167: 50,000 accounts
in a 300 s cycle), each a new access token and check time, as a successful check records. The
agent's web app serves ``/metrics`` (the real handler, the exposition's background task
running), and a client thread scrapes it like Prometheus (gzip, one at a time, every
``--every`` seconds). Reported: the exposition's CPU per scrape (``render_gzip_parts``), the
handler's (the loop thread's CPU until it returns: with a streamed response that includes
whatever else the loop ran while the handler waited for the socket),
the scrape latency the client sees, the loop's other CPU per second (the background task,
the response writes), and the longest time the loop was held (a 1 ms ticker's worst delay),
with its causes: the loop's callbacks over 50 ms by what they ran, and the collector's passes
(``benchmarks/gcwatch.py``). The collector is set as ``channel-agent run`` sets it once the
fleet is loaded (``tune_gc``).
``--check-cpu-ms`` burns that much CPU per check in the loop, as a real check would (~3 ms at
50,000 on a 2 GHz EPYC), to see latency under load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import http.client
import inspect
import io
import json
import pstats
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gcwatch import GcLog, SlowCallbacks  # noqa: E402
from benchmarks.memory import fleet_service  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def slow_by_cause(slow: list[tuple[float, float, float, str]], since: float, until: float,
                  ) -> dict[str, dict[str, float]]:
    """The slow callbacks that ended between ``since`` and ``until`` (time.time()), by what
    they ran (a task's name and coroutine, or the callback): how many, the longest and the
    total, wall and CPU (ms)."""
    causes: dict[str, dict[str, float]] = {}
    for at, wall_ms, cpu_ms, what in slow:
        if not since <= at <= until:
            continue
        cause = causes.setdefault(re.sub(r" at 0x[0-9a-f]+|Task-\d+: ", "", what),
                                  {"n": 0, "wall_ms_max": 0.0, "wall_ms_sum": 0.0,
                                   "cpu_ms_max": 0.0, "cpu_ms_sum": 0.0})
        cause["n"] += 1
        cause["wall_ms_max"] = round(max(cause["wall_ms_max"], wall_ms), 1)
        cause["wall_ms_sum"] = round(cause["wall_ms_sum"] + wall_ms, 1)
        cause["cpu_ms_max"] = round(max(cause["cpu_ms_max"], cpu_ms), 1)
        cause["cpu_ms_sum"] = round(cause["cpu_ms_sum"] + cpu_ms, 1)
    return causes


def gc_by_generation(passes: list[tuple[float, int, float, float, int, int]], since: float,
                     until: float) -> dict[str, dict[str, float]]:
    """The collector's passes that ended between ``since`` and ``until`` (time.time()), per
    generation: how many, the longest and the total wall time (ms)."""
    generations: dict[str, dict[str, float]] = {}
    for at, generation, wall_ms, _, _, _ in passes:
        if not since <= at <= until:
            continue
        gen = generations.setdefault(f"gen{generation}",
                                     {"n": 0, "wall_ms_max": 0.0, "wall_ms_sum": 0.0})
        gen["n"] += 1
        gen["wall_ms_max"] = round(max(gen["wall_ms_max"], wall_ms), 1)
        gen["wall_ms_sum"] = round(gen["wall_ms_sum"] + wall_ms, 1)
    return generations


def scraper(port: int, every: float, stop: threading.Event, latencies: list[float],
            sizes: list[int]) -> None:
    """Prometheus: one scrape at a time, gzip accepted, the body read and not inflated."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    while not stop.is_set():
        started = time.monotonic()
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.monotonic() - started)
        sizes.append(len(body))
        time.sleep(max(0.0, every - (time.monotonic() - started)))
    conn.close()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp import web

    from agent.channel import CheckResult
    from agent.cli.run import tune_gc
    from agent.metrics import exposition as exposition_module
    from agent.web import server

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        service = await fleet_service(Path(tmp), args.accounts, args.datasets)
        tune_gc()  # as `channel-agent run` does once the fleet is loaded
        passes, slow = GcLog(), SlowCallbacks()
        gc.callbacks.append(passes)
        slow.install()
        served_lags: list[int] = []  # the ages' lag of each scrape (where reported)
        options: dict[str, Any] = {"age_lag": args.age_lag}
        if "on_age_lag" in inspect.signature(exposition_module.Exposition).parameters:
            options["on_age_lag"] = served_lags.append
            if args.max_age_lag is not None:
                options["max_age_lag"] = args.max_age_lag
        exposition = exposition_module.Exposition(service.metrics.registry, **options)
        cpu = time.thread_time()
        exposition.render_gzip()
        first_ms = (time.thread_time() - cpu) * 1000

        handler_cpu: list[float] = []
        render_cpu: list[float] = []  # the exposition's own part of the handler's
        for name in ("render_gzip_parts", "render_gzip"):  # the first this version has
            if hasattr(exposition, name):
                render = getattr(exposition, name)

                def timed(*a, render=render, **kw):
                    started = time.thread_time()
                    try:
                        return render(*a, **kw)
                    finally:
                        render_cpu.append(time.thread_time() - started)

                setattr(exposition, name, timed)
                break
        check_cpu = [0.0]

        async def metrics(request: web.Request) -> web.StreamResponse:
            started = time.thread_time()
            response = await server.metrics(request)
            handler_cpu.append(time.thread_time() - started)
            return response

        app = web.Application()
        app[server.EXPOSITION] = exposition
        app.router.add_get("/metrics", metrics)
        app.cleanup_ctx.append(server._refresh_exposition)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]

        accounts = [account for account, _ in service.fleet]
        lag = [0.0]

        async def ticker() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.001)
                lag[0] = max(lag[0], time.monotonic() - before - 0.001)

        async def checks() -> None:
            i, started = 0, time.monotonic()
            while True:
                due = started + i / args.checks_per_second
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                started_cpu, now = time.thread_time(), time.time()
                account = accounts[(i * 7919) % len(accounts)]
                service.fleet.record(account, CheckResult(
                    valid=True, targets={str(10_000_000 + i % len(accounts)): True},
                    targets_reached=1, access_token_issued_at=now,
                    access_token_expires_at=now + 3600,
                    refresh_token_fingerprint=f"{i % len(accounts):012x}", client_valid=True))
                if args.check_cpu_ms:
                    end = time.thread_time() + args.check_cpu_ms / 1000
                    while time.thread_time() < end:
                        pass
                check_cpu[0] += time.thread_time() - started_cpu
                i += 1

        tasks = [asyncio.create_task(checks()), asyncio.create_task(ticker())]
        await asyncio.sleep(2)  # the changes start; the first scrapes set the scraper's pace
        stop = threading.Event()
        latencies: list[float] = []
        sizes: list[int] = []
        client = threading.Thread(target=scraper, args=(port, args.every, stop, latencies,
                                                        sizes))
        client.start()
        await asyncio.sleep(3)  # warm: the background learns the scraper's interval
        handler_cpu.clear()
        render_cpu.clear()
        latencies.clear()
        served_lags.clear()
        lag[0], check_cpu[0] = 0.0, 0.0
        profile = cProfile.Profile() if args.profile else None
        since = time.time()
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.monotonic()
        if profile:
            profile.enable()
        await asyncio.sleep(args.seconds)
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        loop_cpu = time.thread_time() - loop_cpu
        until = time.time()
        stop.set()
        await asyncio.to_thread(client.join)
        for task in tasks:
            task.cancel()
        await runner.cleanup()
        await service.stop()
        service.store.close()
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(60)
        Path(args.profile).write_text(out.getvalue())
        profile.dump_stats(f"{args.profile}.pstats")  # for pstats' callers and callees
    ms = [c * 1000 for c in handler_cpu]
    return {
        "accounts": args.accounts, "first_scrape_cpu_ms": round(first_ms, 1),
        "scrapes": len(ms), "gzip_mb": round(sizes[-1] / 2**20, 2) if sizes else 0,
        "render_cpu_ms_p50": round(percentile([c * 1000 for c in render_cpu], 0.5), 2),
        "render_cpu_ms_p90": round(percentile([c * 1000 for c in render_cpu], 0.9), 2),
        "render_cpu_ms_p99": round(percentile([c * 1000 for c in render_cpu], 0.99), 2),
        "handler_cpu_ms_p50": round(percentile(ms, 0.5), 2),
        "handler_cpu_ms_p90": round(percentile(ms, 0.9), 2),
        "handler_cpu_ms_p99": round(percentile(ms, 0.99), 2),
        "handler_cpu_ms_max": round(max(ms, default=0), 2),
        "latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        # the loop's CPU besides scrapes and checks: the background task, the response
        # writes, the ticker
        "loop_other_cpu_ms_per_s": round((loop_cpu - sum(handler_cpu) - check_cpu[0])
                                         * 1000 / wall, 1),
        "loop_cpu_per_s": round(loop_cpu / wall, 3),
        "process_cpu_per_s": round(cpu / wall, 3),
        "loop_held_max_ms": round(lag[0] * 1000, 1),
        # seconds the oldest age of a scrape was behind its clock (not on main's code)
        "age_lag_s_p50": percentile(served_lags, 0.5),
        "age_lag_s_p99": percentile(served_lags, 0.99),
        "age_lag_s_max": max(served_lags, default=0),
        "slow_callbacks": slow_by_cause(slow.slow, since, until),
        "gc": gc_by_generation(passes.passes, since, until),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between scrapes")
    parser.add_argument("--checks-per-second", type=float, default=167)
    parser.add_argument("--check-cpu-ms", type=float, default=0)
    parser.add_argument("--age-lag", type=int, default=1, help="Exposition's age_lag")
    parser.add_argument("--max-age-lag", type=int, default=None,
                        help="Exposition's max_age_lag (where it has one)")
    parser.add_argument("--profile", default=None, help="cProfile of the measured seconds")
    parser.add_argument("--workdir", default=None, help="where the fleet's files go")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()

"""The performance benchmark: the real agent against the Amazon simulator with N accounts.

    make bench                                   # 10,000 accounts, 50 ms latency
    make bench BENCH_ARGS="--accounts 1000"
    .venv/bin/python benchmarks/run.py --help

Three processes, so each one's CPU is its own: the simulator (with an injected latency per
answer), the agent (``channel-agent run``), and this script (scraper, bookkeeping). Each
account's check is one token refresh (``refresh_interval: 0``) and one ``GET /v2/profiles``
(no expected profiles, so no probe): the two requests the floor makes with bare aiohttp.

Phases, one table at the end (docs/performance.md explains each figure):
1. flat out (``--check-interval``: by default N/1,000 s, 2-10 s, so that more checks are
   due than the latency lets 100 at a time answer: the agent is behind its schedule, as the
   floor's loop always is; a cycle that kept its schedule is flagged in the table): from
   ready until every account was checked once, then ``--cycles`` - 1 times more (3 cycles,
   as the floor has 3 runs): checks/s, agent CPU per check. The CPU figure is the median
   cycle's over the median floor run's (the first cycle, a new fleet's, is shown too);
0. heartbeats: one per data set of every account (``--datasets``), posted in batches, once
   the inventory's fleet is applied and indexed (that wait timed on its own), then one
   scrape, which waits while the agent renders what they changed (else that rendering
   would fall inside phase 1's window);
2. the next such cycle with a scraper on /metrics every 100 ms: p50/p99 under full load;
3. floor: the same two requests per account with bare aiohttp, same concurrency, own process;
4. exposition: in this process, from a copy of the agent's state file: re-rendering every
   account (as after a cycle) vs generate_latest on the same registry; then ``--starts`` (3)
   agents started on that copy, whose restore snapshot opening it deleted, each killed once
   ready (no stop, so none writes a snapshot): time to /-/ready after a crash;
5. restart with every account restored (from the snapshot of the agent's clean stop) and
   ``--paced-interval`` (60s): time to /-/ready, ``--starts`` times (each start but the last
   stopped cleanly, which writes the snapshot the next one restores), then one full cycle at
   that pace with the scraper: p50/p99, response sizes. Both start figures are medians: one
   start's CPU moves by up to half between starts of the same code on this machine
   (``benchmarks/restart.py``: 0.79-1.22 CPU-s at 10,000 accounts);
6. inventory: an unchanged refresh of an N-row SQL inventory (benchmarks/inventory.py, in a
   process of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import gzip
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config.durations import format_duration, parse_duration  # noqa: E402
from benchmarks.fleet import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    account_name,
    build_fleet,
    dataset_name,
    on_a_copy_of_the_state,
    simulator_accounts,
    unchanged_refresh,
    wait_for_applied,
    wait_for_fleet,
)
from benchmarks.report import rows  # noqa: E402

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of a process so far (from /proc/PID/stat), or of one of its
    threads (/proc/PID/task/TID/stat; the main thread, the event loop's, has TID == PID)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flat_out_schedule(n: int, interval: str, timeout: str) -> tuple[str, str]:
    """Phases 1-2's ``check_interval`` and ``check_timeout``; "auto": N/1,000 seconds,
    clamped to 2-10 s (10 s from 10,000 accounts up, as before), and a timeout of half
    that, at most 5 s. A fleet of N accounts at interval I has at most N/I checks due per
    second: with 2,000 accounts at 10 s the agent checked 200 a second, its schedule's
    pace, and its CPU per check (the background work of every second spread over fewer
    checks, the loop woken for fewer events each time) was ~1.5x that of the same agent
    flat out, while the floor always runs flat out (docs/performance.md, sixth round)."""
    seconds = min(10.0, max(2.0, n / 1000))
    if interval == "auto":
        interval = format_duration(round(seconds, 3))
    if timeout == "auto":
        timeout = format_duration(round(min(5.0, parse_duration(interval) / 2), 3))
    return interval, timeout


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- set-up ------------------------------------------------------------------------------------


def compile_sources(root: Path = ROOT) -> None:
    """Byte-compile the agent and the plugins as an installed wheel has them: the agent and
    the plugins are installed editable, and with PYTHONDONTWRITEBYTECODE (set in some
    development shells) every start would compile ~130 modules from source (~0.2 s)."""
    for directory in (root / "agent", root / "plugins"):
        compileall.compile_dir(directory, quiet=1, workers=1)


def fresh_workdir(path: str) -> Path:
    """An empty work directory (a previous run's is removed), the sources compiled."""
    workdir = Path(path).resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    compile_sources()
    return workdir


def start_simulator(workdir: Path, n: int, latency: float) -> tuple[subprocess.Popen, str]:
    (workdir / "sim-accounts.json").write_text(json.dumps(simulator_accounts(n)))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "channel_agent_amazon_ads.simulator",
         "--listen", f"127.0.0.1:{port}", "--accounts", str(workdir / "sim-accounts.json"),
         "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
         "--latency", str(latency)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        raise SystemExit(f"the simulator did not start: {line}")
    return proc, f"http://127.0.0.1:{port}"


class AgentProcess:
    def __init__(self, config: Path, workdir: Path, profile: Path | None) -> None:
        self.config, self.workdir, self.profile = config, workdir, profile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Start the agent; return the seconds until /-/ready answered 200."""
        command = [str(BIN / "channel-agent"), "run", "--config", str(self.config),
                   "--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", "warning"]
        if self.profile is not None:
            command = [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200",
                       "--output", str(self.profile), "--", *command]
        log = (self.workdir / "agent.log").open("a")
        started = time.monotonic()
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while time.monotonic() - started < 120:
            if self.proc.poll() is not None:
                raise SystemExit(f"the agent exited; see {self.workdir / 'agent.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"GET /-/ready HTTP/1.0\r\n\r\n")
                    if b" 200 " in s.recv(64):
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.01)
        raise SystemExit("the agent never became ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.profile else signal.SIGTERM)
            self.proc.wait(timeout=60)


# -- measuring ---------------------------------------------------------------------------------


def checked_since(db: Path, since: float) -> int:
    """Accounts whose last check ended after ``since`` (read from the agent's state file)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM accounts WHERE last_check >= ?",
                            (since,)).fetchone()[0]


async def token_requests(session: aiohttp.ClientSession, sim_url: str) -> int:
    async with session.get(f"{sim_url}/_sim/stats") as response:
        return (await response.json())["by_path"].get("/auth/o2/token", 0)


async def full_cycle(agent: AgentProcess, sim_url: str, n: int,
                     scrape_every: float | None) -> dict[str, Any]:
    """Wait until every account was checked once more; measure the agent meanwhile."""
    db = agent.workdir / "var" / "agent.db"
    latencies: list[float] = []
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        since = time.time()
        cpu0, wall0 = cpu_seconds(agent.pid), time.monotonic()
        loop0 = cpu_seconds(agent.pid, agent.pid)
        tokens0 = await token_requests(session, sim_url)
        scraper = (asyncio.create_task(scrape(session, agent.url, scrape_every, latencies))
                   if scrape_every else None)
        while await asyncio.to_thread(checked_since, db, since) < n:
            await asyncio.sleep(0.25)
        cpu1, wall1 = cpu_seconds(agent.pid), time.monotonic()
        loop1 = cpu_seconds(agent.pid, agent.pid)
        checks = await token_requests(session, sim_url) - tokens0
        if scraper is not None:
            scraper.cancel()
    seconds = wall1 - wall0
    return {"seconds": seconds, "checks": checks, "checks_per_second": checks / seconds,
            "cpu_ms_per_check": (cpu1 - cpu0) * 1000 / checks,
            # of which the event loop's thread; the rest: the exposition's compression
            # thread, the state store's and the default executor's threads
            "loop_cpu_ms_per_check": (loop1 - loop0) * 1000 / checks,
            "scrapes": len(latencies),
            "scrape_p50_ms": percentile(latencies, 0.5) * 1000,
            "scrape_p99_ms": percentile(latencies, 0.99) * 1000}


def kept_schedule(cycle: dict[str, Any], n: int, interval: float) -> bool:
    """Whether a "flat out" cycle went at its schedule's pace (N checks per interval, within
    10%) rather than as fast as the agent could: then it was not flat out."""
    return cycle["checks_per_second"] * interval >= 0.9 * n


async def scrape(session: aiohttp.ClientSession, url: str, every: float,
                 latencies: list[float]) -> None:
    """Like Prometheus: one scrape at a time, every ``every`` seconds, gzip accepted."""
    while True:
        started = time.monotonic()
        async with session.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}) as r:
            await r.read()
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))


async def response_sizes(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}) as r:
            zipped = await r.read()
            encoding = r.headers.get("Content-Encoding", "")
        async with session.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"}) as r:
            plain = await r.read()
    if encoding != "gzip":  # an agent that does not compress: measure what gzip would give
        zipped = gzip.compress(plain)
    return {"plain_bytes": len(plain), "gzip_bytes": len(zipped),
            "series": sum(1 for line in plain.splitlines() if line and line[0] != ord("#"))}


async def heartbeats(url: str, n: int, datasets: int, batch: int,
                     singles: int = 1000) -> dict[str, Any]:
    """Post a heartbeat for every data set of every account, ``batch`` per request, one
    request at a time (as one pipeline would); then ``singles`` one by one."""
    now = time.time()
    items = [{"channel": "amazon_ads", "account": account_name(i), "dataset": dataset_name(j),
              "last_updated": now - 3600} for i in range(n) for j in range(datasets)]
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        for start in range(0, len(items), batch):
            async with session.post(f"{url}/api/v1/freshness/batch",
                                    json={"heartbeats": items[start:start + batch]}) as r:
                if r.status != 200:
                    raise SystemExit(f"heartbeats refused: {await r.text()}")
        seconds = time.monotonic() - started
        started = time.monotonic()
        for item in items[:singles]:
            async with session.post(f"{url}/api/v1/freshness",
                                    json={**item, "last_updated": now - 1800}) as r:
                if r.status != 204:
                    raise SystemExit(f"heartbeat refused: {await r.text()}")
        single_seconds = time.monotonic() - started
    return {"count": len(items), "batch": batch, "seconds": seconds,
            "per_second": len(items) / seconds,
            "single_per_second": min(singles, len(items)) / single_seconds}


async def settle(agent: AgentProcess) -> dict[str, float]:
    """One scrape after the heartbeats, as Prometheus would make: the agent renders the
    freshness series they changed before it answers. Without it, the background (which
    renders changes every 10 s while no scrape is expected) would render them inside phase
    1's window, and their CPU would count as the checks'."""
    cpu = cpu_seconds(agent.pid)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        started = time.monotonic()
        async with session.get(f"{agent.url}/metrics", headers={"Accept-Encoding": "gzip"}) as r:
            await r.read()
        seconds = time.monotonic() - started
    return {"scrape_ms": seconds * 1000, "agent_cpu_s": cpu_seconds(agent.pid) - cpu}


def floor(sim_url: str, n: int, concurrency: int, sim_pid: int, runs: int = 3
          ) -> dict[str, Any]:
    """Run the bare aiohttp loop in its own process ``runs`` times: CPU and wall time of the
    best run and every run's CPU per check (``cpu_ms_per_check_runs``). On a shared 2-core
    machine the same loop's CPU moves by 10-45% between benchmark runs, and
    the agent's by 10-20%: the ratio compares the median of as many runs of each. The
    simulator's CPU per check meanwhile (``sim_cpu_ms_per_check_runs``) is kept too: the
    same requests cost it more beside the agent (which keeps a core busier) than beside the
    floor, what sharing the machine costs a process."""
    results = []
    served = []
    for _ in range(runs):
        before = cpu_seconds(sim_pid)
        out = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "floor.py"), sim_url, str(n),
             str(concurrency), CLIENT_ID, CLIENT_SECRET],
            capture_output=True, text=True, check=True,
        )
        results.append(json.loads(out.stdout))
        served.append((cpu_seconds(sim_pid) - before) * 1000 / n)
    result = min(results, key=lambda r: r["cpu_seconds"])
    result["cpu_ms_per_check"] = result["cpu_seconds"] * 1000 / n
    result["cpu_ms_per_check_runs"] = [r["cpu_seconds"] * 1000 / n for r in results]
    result["sim_cpu_ms_per_check_runs"] = served
    result["checks_per_second"] = n / result["seconds"]
    return result


def exposition_rebuild(config: Path, repeat: int = 3) -> dict[str, float]:
    """Re-rendering after a cycle that changed every account vs generate_latest, on the
    agent's own state."""
    from prometheus_client import generate_latest

    from agent.config.loader import load_config
    from agent.metrics.exposition import Exposition
    from agent.plugins import load_plugins
    from agent.service import AgentService

    plugins = load_plugins()
    service = AgentService(load_config(config, plugins.channels), plugins)
    exposition = Exposition(service.metrics.registry)
    exposition.render_gzip()

    def best(fn, before=lambda: None) -> float:
        times = []
        for _ in range(repeat):
            before()
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    def rebuild() -> None:
        exposition.invalidate()
        exposition.render_gzip()

    def cycle() -> None:
        """What a cycle of successful checks changes in every account's state."""
        for state in service.fleet.states.values():
            for field in ("last_check", "last_valid", "access_issued", "access_expires"):
                if getattr(state, field) is not None:
                    setattr(state, field, getattr(state, field) + 300)

    latest = best(lambda: generate_latest(service.metrics.registry))
    rebuilt = best(rebuild, before=cycle)
    scrape = best(exposition.render_gzip)
    service.store.close()
    return {"generate_latest_ms": latest * 1000, "rebuild_ms": rebuilt * 1000,
            "ratio": rebuilt / latest, "unchanged_scrape_ms": scrape * 1000}


# -- the run -----------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    n = args.accounts
    workdir = fresh_workdir(args.workdir)
    sim, sim_url = start_simulator(workdir, n, args.latency)
    results: dict[str, Any] = {}
    args.check_interval, args.check_timeout = flat_out_schedule(n, args.check_interval,
                                                                args.check_timeout)
    interval = parse_duration(args.check_interval)
    try:
        config = build_fleet(workdir, n, args, sim_url, args.check_interval)
        agent = AgentProcess(config, workdir, args.profile)
        results["first_ready_s"] = agent.start()
        try:
            log(f"inventory: {n} accounts taken {wait_for_fleet(workdir, n):.1f} s after ready")
            # the first apply and the index's rebuild are start-up work: a row of their own,
            # not inside the heartbeats' window
            results["applied_s"] = wait_for_applied(agent.url, n)
            log(f"fleet applied and indexed {results['applied_s']:.1f} s later")
            if args.datasets:
                log(f"heartbeats: {n * args.datasets} ({args.datasets} data sets per account)")
                results["heartbeats"] = await heartbeats(agent.url, n, args.datasets,
                                                         args.heartbeat_batch)
                results["heartbeats"]["settle"] = await settle(agent)
            log(f"agent ready; phase 1: a full cycle of {n} checks, as fast as it goes")
            results["cycles"] = []
            for _ in range(args.cycles):
                served = cpu_seconds(sim.pid)
                cycle = await full_cycle(agent, sim_url, n, None)
                cycle["sim_cpu_ms_per_check"] = (
                    (cpu_seconds(sim.pid) - served) * 1000 / cycle["checks"])
                cycle["kept_schedule"] = kept_schedule(cycle, n, interval)
                results["cycles"].append(cycle)
                if len(results["cycles"]) < args.cycles:
                    log("phase 1: the next cycle, flat out again (every account's state known)")
            results["cycle"] = results["cycles"][0]
            log("phase 2: the same with a scraper every "
                f"{args.scrape_interval * 1000:g} ms")
            results["scraped"] = await full_cycle(agent, sim_url, n, args.scrape_interval)
            results["scraped"]["kept_schedule"] = kept_schedule(results["scraped"], n, interval)
            results["peak_rss_mb"] = peak_rss_mb(agent.pid)
        finally:
            agent.stop()
        if not args.no_floor:
            log("phase 3: the bare aiohttp floor")
            results["floor"] = floor(sim_url, n, args.concurrency, sim.pid)
        log("phase 4: exposition rebuild vs generate_latest")
        # on a copy: the restart below must find the restore snapshot the agent's stop wrote
        copy = on_a_copy_of_the_state(config, "rebuild")
        results["exposition"] = exposition_rebuild(copy)
        log("phase 4b: start to ready on that copy, whose snapshot the phase deleted: the "
            "start after a crash, restored from the rows")
        results["rows_ready_runs"] = []
        for _ in range(args.starts):
            crashed = AgentProcess(copy, workdir, None)
            results["rows_ready_runs"].append(crashed.start())
            crashed.proc.kill()  # as it came: no stop, no snapshot to write
            crashed.proc.wait()
        log(f"phase 5: restart with every account restored, check_interval "
            f"{args.paced_interval}, a full cycle with the scraper")
        config = build_fleet(workdir, n, args, sim_url, args.paced_interval)
        results["restart_ready_runs"] = []
        for _ in range(args.starts - 1):
            earlier = AgentProcess(config, workdir, None)
            results["restart_ready_runs"].append(earlier.start())
            earlier.stop()  # writes the snapshot the next start restores
        paced = AgentProcess(config, workdir, None)
        results["restart_ready_runs"].append(paced.start())
        try:
            results["paced"] = await full_cycle(paced, sim_url, n, args.scrape_interval)
            results["sizes"] = await response_sizes(paced.url)
            results["peak_rss_mb"] = max(results["peak_rss_mb"], peak_rss_mb(paced.pid))
        finally:
            paced.stop()
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
    if not args.no_inventory:
        log(f"phase 6: inventory refresh of {n} unchanged rows")
        # the fleet's own source, in a thread: it runs its own event loop
        results["inventory"] = await asyncio.to_thread(unchanged_refresh, config)
    return results


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds the simulator waits before each answer")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="agent.max_concurrency, and the floor's")
    parser.add_argument("--check-interval", default="auto",
                        help="phases 1-2: short enough that the agent is always busy "
                        "(auto: N/1000 s, 2-10 s)")
    parser.add_argument("--paced-interval", default="60s",
                        help="phase 5: the check interval of the scraped cycle after restart")
    parser.add_argument("--check-timeout", default="auto",
                        help="auto: half the check interval, at most 5s")
    parser.add_argument("--datasets", type=int, default=2,
                        help="heartbeat data sets per account (posted before the cycles)")
    parser.add_argument("--heartbeat-batch", type=int, default=1000,
                        help="heartbeats per POST /api/v1/freshness/batch")
    parser.add_argument("--max-rps", type=float, default=0,
                        help="channel max_requests_per_second (0: none)")
    parser.add_argument("--scrape-interval", type=float, default=0.1)
    parser.add_argument("--workdir", default="var/bench")
    parser.add_argument("--cycles", type=int, default=3,
                        help="phase 1: flat-out cycles, as many as the floor's runs (the "
                        "CPU figure compares their medians)")
    parser.add_argument("--starts", type=int, default=3,
                        help="phases 4b and 5: starts to /-/ready, each timed (the figure is "
                        "their median)")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--no-inventory", action="store_true",
                        help="skip phase 6 (the inventory refresh)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the agent with py-spy (raw collapsed stacks) to this file")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.starts < 1:
        parser.error("--cycles and --starts must be at least 1")
    results = asyncio.run(bench(args))
    results["machine"] = machine()
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"\n{args.accounts} accounts, {args.latency * 1000:g} ms latency, concurrency "
          f"{args.concurrency}; {results['machine']}")
    from agent.cli.common import print_table

    print_table(["figure", "value", "target", "measured/target", "met"], rows(args, results))


if __name__ == "__main__":
    main()

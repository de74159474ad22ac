"""The operator's pages at fleet scale: server time and size of each page, by fleet size.

    .venv/bin/python benchmarks/pages.py                       # 1,000 and 10,000 accounts
    .venv/bin/python benchmarks/pages.py --accounts 1000 10000 50000 --requests 200

In one process: the agent's web app (agent.web.server.make_app) over a fleet whose states and
data times are recorded as checks and heartbeats would (1% invalid, 0.5% unverified, 1% never
checked, the rest valid; one data set per account, 2% stale). A middleware measures the
server time of each request (handler and rendering, not the client); sizes are the bodies.
Each page is asked ``--requests`` times after 20 warm-up requests, with 50 checks recorded
between two requests (in the same proportions), as a check cycle makes them.
docs/performance.md shows the results.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.channel import Account, Channel, CheckContext, CheckResult  # noqa: E402
from agent.cli.run import tune_gc  # noqa: E402
from agent.config.loader import build_config  # noqa: E402
from agent.hookspecs import hookimpl  # noqa: E402
from agent.plugins import load_plugins  # noqa: E402
from agent.service import AgentService  # noqa: E402
from agent.web.server import make_app  # noqa: E402

RESULTS = [(0.01, CheckResult(valid=False, reason="invalid_grant", detail="revoked")),
           (0.005, CheckResult(valid=None, reason="throttled", detail="HTTP 429")),
           (0.01, None)]  # never checked


def draw_result(rng: random.Random) -> CheckResult | None:
    """A check result in the fleet's proportions (None: not checked)."""
    draw = rng.random()
    for share, outcome in RESULTS:
        if draw < share:
            return outcome
        draw -= share
    return CheckResult(valid=True)


class BenchChannel(Channel):
    name = "bench"
    regions = ("na", "eu", "fe")

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        return CheckResult(valid=True)


class BenchPlugin:
    @hookimpl
    def register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(BenchChannel)


async def build_service(n: int, workdir: Path) -> AgentService:
    """Inside the event loop, so the state file's writes are batched as in the agent."""
    data = {
        "agent": {"state_path": str(workdir / f"agent-{n}.db")},
        "freshness_sources": {"pipeline": {"type": "heartbeat"}},
        "channels": {"bench": {
            "datasets": {"orders": {"source": "pipeline", "max_age": "1d"}},
            "accounts": [{"name": f"merchant-{i:06d}", "region": BenchChannel.regions[i % 3]}
                         for i in range(n)],
        }},
    }
    config = build_config(data, {"bench": BenchChannel}, base_dir=workdir)
    service = AgentService(config, load_plugins([BenchPlugin()], entry_points=False))
    rng = random.Random(n)
    now = time.time()
    for account in service.fleet.accounts.values():
        result = draw_result(rng)
        if result is not None:
            service.fleet.record(account, result)
        dataset = service.freshness.datasets[(*account.key, "orders")]
        age = 2 * 86400 if rng.random() < 0.02 else rng.uniform(0, 3600)
        service.freshness.record(dataset, now - age)
    service.store.flush()
    return service


async def measure(service: AgentService, paths: dict[str, str], requests: int,
                  ) -> dict[str, tuple[float, float, float, int]]:
    """Per page: p50 and p99 server milliseconds, p50 CPU milliseconds (the machine may be
    shared: CPU time does not count waiting for a core), and the body's size."""
    times: list[float] = []
    cpu: list[float] = []

    @web.middleware
    async def timing(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     ) -> web.StreamResponse:
        started, cpu_started = time.perf_counter(), time.thread_time()
        response = await handler(request)
        times.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
        return response

    app = make_app(service)
    app.middlewares.append(timing)
    accounts = list(service.fleet.accounts.values())
    rng = random.Random(1)
    results = {}
    async with TestClient(TestServer(app)) as client:
        for label, path in paths.items():
            size = 0
            for i in range(20 + requests):
                for account in rng.sample(accounts, 50):  # a check cycle goes on meanwhile
                    service.fleet.record(account, draw_result(rng) or CheckResult(valid=True))
                if i == 20:
                    times.clear()
                    cpu.clear()
                response = await client.get(path)
                body = await response.read()
                assert response.status == 200, (path, response.status)
                size = len(body)
            ordered = sorted(times)
            results[label] = (ordered[len(ordered) // 2] * 1000,
                              ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))] * 1000,
                              sorted(cpu)[len(cpu) // 2] * 1000, size)
            times.clear()
            cpu.clear()
    return results


async def run(n: int, workdir: Path, requests: int,
              started: float) -> dict[str, tuple[float, float, float, int]]:
    service = await build_service(n, workdir)
    tune_gc()  # as `channel-agent run` does once the fleet is loaded
    print(f"{n:,} accounts set up in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    try:
        return await measure(service, PATHS, requests)
    finally:
        service.store.close()


PATHS = {
    "GET / (100 rows)": "/",
    "GET /?state=invalid": "/?state=invalid",
    "GET /?q=0042 (name search)": "/?q=0042",
    "GET /accounts/bench/merchant-000042": "/accounts/bench/merchant-000042",
    "GET /api/v1/accounts (100)": "/api/v1/accounts",
    "GET /api/v1/status (100)": "/api/v1/status",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    table: dict[int, dict[str, tuple[float, float, float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.accounts:
            started = time.perf_counter()
            table[n] = asyncio.run(run(n, Path(tmp), args.requests, started))
    print(f"server time per request: p50 / p99 wall ms (p50 CPU ms), body size; "
          f"{args.requests} requests each, 50 checks recorded between two\n")
    print("| page | " + " | ".join(f"{n:,} accounts" for n in table) + " |")
    print("|---|" + "---|" * len(table))
    for label in PATHS:
        cells = [f"{p50:.1f} / {p99:.1f} ms ({cpu:.1f}), {size / 1024:.0f} KiB"
                 for p50, p99, cpu, size in (table[n][label] for n in table)]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""What each layer of a check costs: CPU per check, adding one layer at a time.

    .venv/bin/python benchmarks/layers.py --accounts 2000
    .venv/bin/python benchmarks/layers.py --accounts 2000 --profile core   # cProfile of a layer

Against the simulator in its own process (no latency), with the same concurrency for every
layer, each measured in this process with time.process_time() over a full pass over the
accounts (best of ``--repeat``):

1. aiohttp: the token POST and the profiles GET with a bare aiohttp session (the floor);
2. + httpx: the same two requests built with httpx (URLs parsed once, as the plugin does)
   and sent by the agent's client (``ChannelClient`` over ``AiohttpTransport`` and
   ``RateLimitedTransport``);
3. + plugin: ``AmazonAdsChannel.check`` (request building, retries, parsing, classification);
4. + core: ``Scheduler.check_now`` (timeouts, state, SQLite, metrics, the exposition refresh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.fleet import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    REGIONS,
    account_name,
    build_fleet,
    refresh_token,
)
from benchmarks.run import start_simulator  # noqa: E402


async def run_all(n: int, concurrency: int, fn) -> float:
    """CPU seconds of one pass of fn(i) over n accounts, at most ``concurrency`` at once."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await fn(i)

    cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.process_time() - cpu


def form(i: int) -> str:
    return urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token(i),
                      "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})


async def layers(args: argparse.Namespace) -> dict[str, float]:
    from channel_agent_amazon_lwa.grants import parsed_url

    from agent.cli.run import tune_gc
    from agent.config.loader import load_config
    from agent.metrics.exposition import Exposition
    from agent.plugins import load_plugins
    from agent.service import AgentService

    n, c = args.accounts, args.concurrency
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sim, url = start_simulator(workdir, n, 0.0)
    results: dict[str, float] = {}
    try:
        args.max_rps, args.check_timeout, args.datasets = 0, "30s", 0
        plugins = load_plugins()
        config = load_config(build_fleet(workdir, n, args, url, "1h"), plugins.channels)
        service = AgentService(config, plugins)
        await service.inventory.refresh_all()  # the fleet's accounts come from its inventory
        service.apply_inventory()
        client = service.http["amazon_ads"]
        channel = config.channels["amazon_ads"]
        accounts = {a.name: a for a in service.fleet.accounts.values()}
        assert len(accounts) == n, f"{len(accounts)} of {n} accounts taken in"
        exposition = Exposition(service.metrics.registry)
        exposition.render_gzip()  # as after the first scrape: refreshes follow changes
        tune_gc()  # the collector as `channel-agent run` sets it

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:
            async def bare(i: int) -> None:
                async with session.post(f"{url}/auth/o2/token", data=form(i), headers={
                        "Content-Type": "application/x-www-form-urlencoded"}) as r:
                    token = (await r.json())["access_token"]
                async with session.get(f"{url}/{REGIONS[i % 3]}/v2/profiles", headers={
                        "Authorization": f"Bearer {token}",
                        "Amazon-Advertising-API-ClientId": CLIENT_ID}) as r:
                    await r.json()

            layers = {"aiohttp": bare}

            async def with_httpx(i: int) -> None:
                r = await client.post(
                    parsed_url(f"{url}/auth/o2/token"), content=form(i).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
                token = r.json()["access_token"]
                r = await client.get(parsed_url(f"{url}/{REGIONS[i % 3]}/v2/profiles"), headers={
                    "Authorization": f"Bearer {token}",
                    "Amazon-Advertising-API-ClientId": CLIENT_ID})
                r.json()

            layers["httpx"] = with_httpx
            scheduler = service.scheduler

            async def plugin(i: int) -> None:
                account = accounts[account_name(i)]
                ctx = scheduler_context(scheduler, account)
                result = await channel.check(account, ctx)
                assert result.valid, result

            async def core(i: int) -> None:
                await scheduler.check_now(accounts[account_name(i)])
                if i % 50 == 0:  # the background refresh, every 50 ms at ~1,000 checks/s
                    exposition.refresh()

            layers.update(plugin=plugin, core=core)
            for fn in layers.values():  # warm up: connections, caches
                await run_all(min(n, 200), c, fn)
            if args.profile:
                await profile(n, c, layers[args.profile], args.profile)
                args.repeat = 0
            # round robin, best of each: a busy machine slows some passes, not the layers
            for _ in range(args.repeat):
                for name, fn in layers.items():
                    cpu = await run_all(n, c, fn)
                    results[name] = min(results.get(name, cpu), cpu)
        await service.stop()
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    return {k: v * 1000 / n for k, v in results.items()}


async def profile(n: int, concurrency: int, fn, name: str) -> None:
    """One pass of a layer under cProfile: the functions with the most time of their own."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    await run_all(n, concurrency, fn)
    profiler.disable()
    print(f"--- layer {name}: cProfile, by own time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def scheduler_context(scheduler, account):
    """The CheckContext the scheduler would build, without its timeout and bookkeeping."""
    from agent.channel import CheckContext

    return CheckContext(http=scheduler.http[account.channel],
                        deadline=time.monotonic() + 30,
                        record_request=lambda endpoint, code: scheduler.metrics.api_requests
                        .labels(account.channel, endpoint, code).inc())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", default="var/bench-layers")
    parser.add_argument("--profile", choices=("aiohttp", "httpx", "plugin", "core"),
                        help="instead of timing: one pass of this layer under cProfile")
    args = parser.parse_args()
    per_check = asyncio.run(layers(args))
    if args.profile:
        return
    print(json.dumps(per_check))
    previous = 0.0
    print(f"{'layer':<10} {'CPU ms/check':>13} {'added':>8}")
    for layer, ms in per_check.items():
        print(f"{layer:<10} {ms:>13.3f} {ms - previous:>8.3f}")
        previous = ms


if __name__ == "__main__":
    main()

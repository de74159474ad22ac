"""The floor: each account's two requests (token POST, profiles GET) with bare aiohttp.

Run by benchmarks/run.py in its own process; prints JSON with its CPU and wall seconds.
Usage: floor.py SIM_URL N CONCURRENCY CLIENT_ID CLIENT_SECRET
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlencode

import aiohttp

REGIONS = ("na", "eu", "fe")


async def run(sim_url: str, n: int, concurrency: int, client_id: str, secret: str) -> None:
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def check(i: int) -> None:
            async with semaphore:
                form = urlencode({"grant_type": "refresh_token",
                                  "refresh_token": f"Atzr|bench-{i:06d}-refresh-token",
                                  "client_id": client_id, "client_secret": secret})
                async with session.post(
                    f"{sim_url}/auth/o2/token", data=form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                ) as response:
                    token = (await response.json())["access_token"]
                async with session.get(
                    f"{sim_url}/{REGIONS[i % 3]}/v2/profiles",
                    headers={"Authorization": f"Bearer {token}",
                             "Amazon-Advertising-API-ClientId": client_id},
                ) as response:
                    profiles = await response.json()
                assert isinstance(profiles, list)

        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.gather(*(check(i) for i in range(n)))
        print(json.dumps({"cpu_seconds": time.process_time() - cpu,
                          "seconds": time.monotonic() - wall}))


if __name__ == "__main__":
    url, count, limit, cid, csecret = sys.argv[1:6]
    asyncio.run(run(url, int(count), int(limit), cid, csecret))

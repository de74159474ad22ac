"""The simulator serves every shop as its own host, as Shopify does: the agent's per-host
rate limiter must not let one throttled simulated shop pause the others."""

from __future__ import annotations

import httpx
from channel_agent_shopify.simulator import SimShop, Simulator
from shopify_helpers import CLIENT_ID, CLIENT_SECRET, SCOPES, account, channel_for, ctx

from agent.checks.ratelimit import RateLimitedTransport


async def test_a_throttled_shop_does_not_pause_its_neighbours(tmp_path) -> None:
    sim = Simulator(CLIENT_ID, CLIENT_SECRET)
    shops = {name: SimShop(f"{name}.myshopify.com", list(SCOPES), scenario)
             for name, scenario in (("stark", "throttled"), ("acme", "healthy"))}
    for shop in shops.values():
        sim.add_shop(shop)
    await sim.start()
    try:
        def entry(name: str, own_host: bool) -> dict:
            path = tmp_path / f"{name}.access_token"
            path.write_text(shops[name].access_token)
            found = {"name": name, "shop": shops[name].domain,
                     "access_token_file": str(path), "required_scopes": list(SCOPES)}
            if own_host:
                found["admin_url"] = sim.shop_url(shops[name].domain)
            return found

        async def healthy_after_throttled(own_host: bool):
            channel = channel_for(sim, tmp_path, [entry("stark", own_host),
                                                  entry("acme", own_host)])
            transport = RateLimitedTransport(httpx.AsyncHTTPTransport(),
                                             backpressure=channel.backpressure)
            async with httpx.AsyncClient(transport=transport) as http:
                stark = await channel.check(account(channel, "stark"), ctx(http, budget=1))
                # Retry-After 2.0 pauses stark's host past acme's one-second budget
                acme = await channel.check(account(channel, "acme"), ctx(http, budget=1))
            return stark, acme, len(transport.hosts)

        stark, acme, hosts = await healthy_after_throttled(own_host=True)
        assert (stark.valid, stark.reason) == (None, "throttled")
        assert (acme.valid, acme.reason, hosts) == (True, None, 2)
        # behind the shared address, the same throttled shop holds up the healthy one
        stark, acme, hosts = await healthy_after_throttled(own_host=False)
        assert acme.valid is None and hosts == 1
    finally:
        await sim.stop()

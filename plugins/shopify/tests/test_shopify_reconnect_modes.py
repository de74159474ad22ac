"""Shopify's install/grant flow through the two ways a consent comes back without pasting:
the command's local callback and a link the running agent completes. Both refuse a redirect
whose ``hmac`` does not verify, and then store nothing and spend no code."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from channel_agent_shopify.simulator import SimShop, Simulator
from shopify_helpers import CLIENT_ID, SCOPES, ctx, shop_account

from agent.channel import ReconnectError
from agent.config.loader import build_config
from agent.plugins import load_plugins
from agent.reconnect import CALLBACK_PATH, complete, create_link, new_attempt, preflight
from agent.reconnect_redirect import LocalCallback
from agent.service import AgentService
from agent.web.server import make_app

LINK_REDIRECT = f"https://agent.example.com{CALLBACK_PATH}"
OLD = "shpat_old"


@pytest.fixture
async def world(sim: Simulator, tmp_path: Path):
    shop = SimShop("acme.myshopify.com", list(SCOPES), "uninstalled")
    sim.add_shop(shop)
    (tmp_path / "client_secret").write_text(sim.client_secret)
    data = {"agent": {"state_path": "agent.db", "check_interval": "1h"},
            "channels": {"shopify": {
                "client_id": CLIENT_ID, "client_secret_file": "client_secret",
                "endpoints": {"admin_url": sim.admin_url()},
                "accounts": [shop_account(tmp_path, "acme", OLD)]}}}
    config = build_config(data, load_plugins().channels, base_dir=tmp_path)
    channel = config.channels["shopify"]
    return shop, config, channel, channel.accounts[0], tmp_path / "acme.access_token"


async def consent(http: httpx.AsyncClient, url: str) -> str:
    """The merchant approves: the Location Shopify sends the browser to."""
    response = await http.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def forged(location: str) -> str:
    """The same redirect with its hmac replaced: what an attacker without the secret sends."""
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"hmac": "0" * 64}
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


@asynccontextmanager
async def local_callback(channel, acme, port: int):
    """The command's one-request server on a loopback redirect_uri, and the attempt."""
    redirect_uri = f"http://127.0.0.1:{port}/oauth/callback"
    reconnector = preflight(channel, acme)
    attempt = new_attempt(reconnector, acme, redirect_uri)
    server = LocalCallback(redirect_uri, attempt.state, reconnector)
    await server.start()
    try:
        yield attempt, server
    finally:
        await server.stop()


async def test_local_callback_reconnects_the_shop(world, http, unused_tcp_port) -> None:
    shop, _, channel, acme, token_file = world
    async with local_callback(channel, acme, unused_tcp_port) as (attempt, server):
        location = await consent(http, attempt.consent_url)
        assert location.startswith(attempt.redirect_uri + "?")
        page = await http.get(location)
        code = await server.wait(5)
    assert page.status_code == 200 and code == code_of(location)
    outcome = await complete(channel, acme, code, attempt, ctx(http), None)
    assert token_file.read_text().strip() == shop.access_token != OLD
    assert outcome.backup is not None and outcome.backup.read_text() == OLD
    assert (await channel.check(acme, ctx(http))).valid is True


async def test_local_callback_refuses_a_forged_hmac(world, sim, http, unused_tcp_port) -> None:
    _, _, channel, acme, token_file = world
    async with local_callback(channel, acme, unused_tcp_port) as (attempt, server):
        location = await consent(http, attempt.consent_url)
        page = await http.get(forged(location))
        with pytest.raises(ReconnectError) as info:
            await server.wait(5)
    assert page.status_code == 400 and "Nothing was changed" in page.text
    assert info.value.reason == "rejected" and "hmac" in info.value.message
    assert token_file.read_text() == OLD and code_of(location) in sim.codes  # never spent
    assert sorted(p.name for p in token_file.parent.iterdir()
                  if p.name.startswith("acme")) == ["acme.access_token"]  # no backup either


@pytest.fixture
async def agent(world):
    _, config, _, _, _ = world
    service = AgentService(config, load_plugins())
    async with TestClient(TestServer(make_app(service))) as client:
        yield service, client
    await service.stop()


async def follow_link(world, agent, http, tamper: bool):
    """A link made for acme, approved by the merchant, delivered to the agent's callback."""
    _, _, channel, acme, _ = world
    service, client = agent
    link, _ = create_link(service.store, channel, acme, preflight(channel, acme, link=True),
                          LINK_REDIRECT)
    location = await consent(http, link.consent_url)
    assert location.startswith(LINK_REDIRECT + "?")
    delivered = forged(location) if tamper else location
    response = await client.get(f"{CALLBACK_PATH}?{urlsplit(delivered).query}")
    return location, response.status, await response.text()


def valid(service: AgentService) -> float | None:
    return service.metrics.registry.get_sample_value(  # no regions: no region label
        "channel_credential_valid", {"channel": "shopify", "account": "acme"})


async def test_a_link_reconnects_the_shop_in_the_running_agent(world, agent, http) -> None:
    shop, _, _, acme, token_file = world
    service, _ = agent
    await service.scheduler.check_now(acme)
    assert valid(service) == 0  # uninstalled
    _, status, page = await follow_link(world, agent, http, tamper=False)
    assert status == 200 and "Account reconnected" in page, page
    assert token_file.read_text().strip() == shop.access_token != OLD
    assert valid(service) == 1
    assert [link.status for link in service.store.links()] == ["succeeded"]


async def test_a_link_refuses_a_forged_hmac(world, agent, sim, http) -> None:
    _, _, _, _, token_file = world
    service, _ = agent
    location, status, page = await follow_link(world, agent, http, tamper=True)
    assert status == 400 and "Nothing was changed" in page and "hmac" in page
    assert token_file.read_text() == OLD and code_of(location) in sim.codes
    assert sorted(p.name for p in token_file.parent.iterdir()
                  if p.name.startswith("acme")) == ["acme.access_token"]
    assert [link.status for link in service.store.links()] == ["failed"]
    assert service.store.load_grant("shopify", "acme") is None

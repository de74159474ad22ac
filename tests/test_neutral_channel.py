"""A channel with nothing Amazon about it goes through the core and exports correct series.

The ``shop`` channel below is what the README's plugin guide describes: no regions, no
targets, no refresh token, no application client, one reason of its own, no reconnect flow.
It talks to a real HTTP server on loopback through ``ctx.send``.
"""

from __future__ import annotations

import socket
import sys
import types

import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.channel import (
    Account,
    AccountSettings,
    Channel,
    ChannelSettings,
    CheckContext,
    CheckResult,
    MissingSecret,
    Reason,
    status_result,
)
from agent.cli.reconnect_list import show_accounts_to_reconnect
from agent.config.loader import build_config
from agent.config.types import SecretReference, Url
from agent.hookspecs import hookimpl
from agent.metrics.exposition import Exposition
from agent.plugins import load_plugins
from agent.reasons import PERMISSION
from agent.service import AgentService

API_KEY = "shpat_plantedAPIkey0123"


class ShopSettings(ChannelSettings):
    api_url: Url


class ShopAccount(AccountSettings):
    api_key: SecretReference


class ShopChannel(Channel):
    name = "shop"
    title = "A shop platform"
    reasons = (Reason("shop_locked", PERMISSION, "the shop is locked by the platform"),)
    request_endpoints = ("shop",)
    fix_instruction = "ask the merchant to reinstall the app for {account}"
    Settings = ShopSettings
    AccountSettings = ShopAccount

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            key = account.settings["api_key"].read()
        except MissingSecret as exc:
            return CheckResult(valid=False, reason="missing_credential", detail=str(exc))
        request = ctx.http.build_request("GET", f"{self.settings['api_url']}/{account.name}",
                                         headers={"X-Api-Key": key.reveal()})
        response = await ctx.send(request, endpoint="shop")
        if response.status_code == 423:
            return CheckResult(valid=False, reason="shop_locked", detail="HTTP 423")
        return status_result(response)


class ShopPlugin:
    @hookimpl
    def register_channels(self, register):
        register(ShopChannel)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def shop_api():
    statuses = {"good": 200, "revoked": 401, "locked": 423, "busy": 429}

    async def handle(request: web.Request) -> web.Response:
        assert request.headers["X-Api-Key"] == API_KEY
        return web.json_response({}, status=statuses[request.match_info["name"]])

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def config(tmp_path, api_url: str, names=("good", "revoked", "locked", "busy")):
    key = tmp_path / "key"
    key.write_text(API_KEY)
    data = {
        "agent": {"state_path": str(tmp_path / "agent.db"), "check_timeout": "2s"},
        "channels": {"shop": {
            "api_url": api_url,
            "retry": {"initial_backoff": "10s"},  # a 429 is not retried within the budget
            "accounts": [{"name": name, "api_key_file": str(key)} for name in names],
        }},
    }
    return build_config(data, {"shop": ShopChannel}, base_dir=tmp_path)


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples
            if s.name.startswith("channel_") and "agent" not in s.name}


async def test_a_channel_without_profiles_client_or_refresh_token(tmp_path, shop_api):
    service = AgentService(config(tmp_path, shop_api),
                           load_plugins([ShopPlugin()], entry_points=False))
    try:
        for account, _ in list(service.fleet):
            await service.scheduler.check_now(account)
        text = generate_latest(service.metrics.registry)
        got = samples(text)
        # the cached renderer behind /metrics says the same
        assert samples(Exposition(service.metrics.registry).render()) == got
    finally:
        await service.stop()

    def one(name: str, account: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted({"channel": "shop", "account": account,
                                            **labels}.items()))))

    assert one("channel_credential_valid", "good") == 1
    assert one("channel_credential_valid", "revoked") == 0
    assert one("channel_credential_failure_reason", "revoked", reason="unauthorized",
               **{"class": "credential"}) == 1
    # the channel's own reason, in its class
    assert one("channel_credential_valid", "locked") == 0
    assert one("channel_credential_failure_reason", "locked", reason="shop_locked",
               **{"class": "permission"}) == 1
    assert one("channel_credential_rejection_reason", "locked", reason="shop_locked",
               **{"class": "permission"}) == 1
    assert one("channel_credential_rejection_reason", "busy", reason="throttled",
               **{"class": "transient"}) is None
    assert one("channel_credential_valid", "busy") is None  # a 429 is never a verdict
    assert one("channel_credential_failure_reason", "busy", reason="throttled",
               **{"class": "transient"}) == 1
    for (name, labels), _ in got.items():
        keys = dict(labels)
        assert "region" not in keys, f"{name} has a region label: {labels}"
        assert not name.startswith(("channel_token_", "channel_refresh_token_",
                                    "channel_access_token_", "channel_target",
                                    "channel_client_")), name
    # ctx.send counted every request; shop_locked is exported for this channel only
    requests = b'channel_agent_api_requests_total{channel="shop",code="423",endpoint="shop"} 1.0'
    assert requests in text
    assert b'channel_check_failures_total{channel="shop",reason="shop_locked"} 1.0' in text


async def test_an_undeclared_reason_is_a_plugin_error(tmp_path, shop_api):
    service = AgentService(config(tmp_path, shop_api, names=("good",)),
                           load_plugins([ShopPlugin()], entry_points=False))
    channel = service.config.channels["shop"]
    try:
        async def check(account, ctx):
            return CheckResult(valid=False, reason="profile_missing")  # Ads' reason, not ours
        channel.check = check
        account = service.find_account("shop", "good")
        state = await service.scheduler.check_now(account)
    finally:
        await service.stop()
    assert (state.valid, state.reason) == (None, "plugin_error")


async def test_a_refused_connection_is_network_not_plugin_error(tmp_path):
    service = AgentService(config(tmp_path, f"http://127.0.0.1:{closed_port()}", names=("good",)),
                           load_plugins([ShopPlugin()], entry_points=False))
    try:
        state = await service.scheduler.check_now(service.find_account("shop", "good"))
    finally:
        await service.stop()
    assert (state.valid, state.reason) == (None, "network")
    assert "ConnectError" in state.detail


async def test_reconnect_list_gives_the_channels_own_fix(tmp_path, shop_api, capsys):
    cfg = config(tmp_path, shop_api, names=("good", "revoked"))
    service = AgentService(cfg, load_plugins([ShopPlugin()], entry_points=False))
    try:
        for account, _ in list(service.fleet):
            await service.scheduler.check_now(account)
        service.store.flush()
    finally:
        await service.stop()
    show_accounts_to_reconnect(cfg, str(tmp_path / "config.yaml"), None, 0.0, as_json=True)
    out = capsys.readouterr().out
    assert "ask the merchant to reinstall the app for revoked" in out
    assert "channel-agent reconnect" not in out
    assert '"good"' not in out


# --- the README's example plugin, run as a plugin author would ----------------------------

README = __import__("pathlib").Path(__file__).parent.parent / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Write a channel plugin", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("status,body,expected", [
    (200, '{"access_token": "x"}', (True, None)),
    (400, '{"error": "invalid_grant"}', (False, "invalid_grant")),
    (401, "{}", (False, "unauthorized")),
    (403, '{"code": "SUSPENDED"}', (False, "seller_suspended")),
    (403, "{}", (False, "forbidden")),
    (429, "{}", (None, "throttled")),
    (503, "{}", (None, "server_error")),
    (None, "", (None, "network")),  # connection refused
])
async def test_the_readme_example_classifies_like_the_guide_says(tmp_path, status, body,
                                                                  expected):
    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v3/token", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1] if status else closed_port()
    try:
        module = types.ModuleType("readme_walmart")  # pydantic resolves names in a module
        sys.modules[module.__name__] = module
        exec(compile(readme_example().replace("https://…", f"http://127.0.0.1:{port}"),
                     "README example", "exec"), module.__dict__)
        walmart = module.Walmart
        token = tmp_path / "acme.token"
        token.write_text("planted-refresh-token")
        data = {"agent": {"state_path": str(tmp_path / "agent.db"), "check_timeout": "2s"},
                "channels": {"walmart": {
                    "client_id": "id", "client_secret": "s", "retry": {"initial_backoff": "5s"},
                    "accounts": [{"name": "acme", "region": "us",
                                  "refresh_token_file": str(token)}]}}}
        cfg = build_config(data, {"walmart": walmart}, base_dir=tmp_path)

        class Plugin:
            @hookimpl
            def register_channels(self, register):
                register(walmart)

        service = AgentService(cfg, load_plugins([Plugin()], entry_points=False))
        try:
            state = await service.scheduler.check_now(service.find_account("walmart", "acme"))
            requests = service.metrics.registry.get_sample_value(
                "channel_agent_api_requests_total",
                {"channel": "walmart", "endpoint": "token",
                 "code": str(status) if status else "network"})
        finally:
            await service.stop()
    finally:
        await runner.cleanup()
    assert (state.valid if state.check_success else None, state.reason) == expected
    assert requests >= 1  # ctx.send counted it

"""A Shopify Admin API simulator on loopback, for the demo and tests.

Every shop lives under ``/shops/<domain>`` (the channel's ``admin_url`` template points
there). Shops added before :meth:`Simulator.start` are also served on a port of their own
(:meth:`Simulator.shop_url`, an account's ``admin_url``): on Shopify every shop is its own
host, and the agent's rate limiter pauses a host, so one throttled shop must not pause the
others behind one simulator address.

Per shop: ``GET /admin/oauth/access_scopes.json``, ``GET /admin/api/<v>/shop.json``,
``POST /admin/oauth/access_token`` (code and refresh_token grants, rotating refresh tokens)
and ``GET /admin/oauth/authorize`` (consents at once and redirects with a signed ``hmac``).
Answers copy Shopify's published bodies (see :mod:`channel_agent_shopify.classify`). Every
answer carries ``X-Shopify-Shop-Api-Call-Limit`` (a 40-call bucket draining 2 per second).

Control: ``GET /_sim/shops``, ``PUT /_sim/shops/<domain>`` with ``{"scenario": ...}``.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from agent.channel import Secret
from channel_agent_shopify.reconnect import redirect_hmac
from channel_agent_shopify.shopify_api import (
    CALL_LIMIT_HEADER,
    DEPRECATED_HEADER,
    VERSION_HEADER,
    version_retirement,
)

SCENARIOS: dict[str, str] = {
    "healthy": "answers everything",
    "uninstalled": "401 Invalid API key or access token (the app was uninstalled)",
    "frozen": "402 Unavailable Shop (unpaid bill)",
    "locked": "423 (the shop is locked)",
    "not_found": "404 Not Found (no such shop)",
    "scope_removed": "access_scopes lacks the last required scope",
    "throttled": "429 with Retry-After: 2.0 and a full call-limit bucket",
    "server_error": "503 HTML page",
    "deprecated": "healthy, but flags calls as deprecated",
}
BUCKET, LEAK = 40, 2.0
# Shopify's published bodies (classify.py cites them).
UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or "
                          "wrong password)"}
THROTTLED = {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
                       "resume uninterrupted service."}
HTML_503 = "<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>"


@dataclass
class SimShop:
    domain: str
    scopes: list[str]
    scenario: str = "healthy"
    access_token: str = field(default_factory=lambda: "shpat_" + secrets.token_hex(16))
    refresh_token: str | None = None
    bucket: float = 0.0
    bucket_at: float = 0.0

    @property
    def name(self) -> str:
        return self.domain.removesuffix(".myshopify.com")


class Simulator:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.shops: dict[str, SimShop] = {}
        self.codes: dict[str, str] = {}  # code -> shop domain
        self.oldest_version = "2025-10"
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.shop_bases: dict[str, str] = {}  # domain -> its own http://host:port

    def add_shop(self, shop: SimShop) -> None:
        self.shops[shop.domain] = shop

    def admin_url(self) -> str:
        return f"{self.base_url}/shops/{{shop}}"

    def shop_url(self, domain: str) -> str:
        """The shop's admin base URL on its own port (the shared one if it has none)."""
        return f"{self.shop_bases.get(domain, self.base_url)}/shops/{domain}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listens; returns the shared base URL (``SimulatorThread`` runs it too)."""
        app = web.Application()
        app.router.add_get("/shops/{shop}/admin/oauth/access_scopes.json", self._scopes)
        app.router.add_get("/shops/{shop}/admin/api/{version}/shop.json", self._shop)
        app.router.add_post("/shops/{shop}/admin/oauth/access_token", self._token)
        app.router.add_get("/shops/{shop}/admin/oauth/authorize", self._authorize)
        app.router.add_get("/_sim/shops", self._list)
        app.router.add_put("/_sim/shops/{shop}", self._set)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.base_url = await self._listen(host, port)
        for domain in self.shops:
            self.shop_bases[domain] = await self._listen(host, 0)
        return self.base_url

    async def _listen(self, host: str, port: int) -> str:
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        return f"http://{host}:{sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.shop_bases.clear()

    # --- the Admin API ------------------------------------------------------------------

    def _answer(self, shop: SimShop, status: int, body: Any,
                headers: dict[str, str] | None = None) -> web.Response:
        now = time.monotonic()
        shop.bucket = max(0.0, shop.bucket - (now - shop.bucket_at) * LEAK) + 1
        shop.bucket_at = now
        if shop.scenario == "throttled":
            shop.bucket = BUCKET
        all_headers = {CALL_LIMIT_HEADER: f"{min(BUCKET, round(shop.bucket))}/{BUCKET}",
                       **(headers or {})}
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html",
                                headers=all_headers)
        return web.json_response(body, status=status, headers=all_headers)

    def _failure(self, request: web.Request) -> tuple[SimShop | None, web.Response | None]:
        shop = self.shops.get(request.match_info["shop"])
        if shop is None or shop.scenario == "not_found":
            return None, web.json_response({"errors": "Not Found"}, status=404)
        token = request.headers.get("X-Shopify-Access-Token")
        if shop.scenario == "uninstalled" or token != shop.access_token:
            return shop, self._answer(shop, 401, UNAUTHORIZED)
        simple = {"frozen": (402, {"errors": "Unavailable Shop"}),
                  "locked": (423, {"errors": "This shop is unavailable"}),
                  "server_error": (503, HTML_503)}
        if shop.scenario in simple:
            return shop, self._answer(shop, *simple[shop.scenario])
        if shop.scenario == "throttled":
            return shop, self._answer(shop, 429, THROTTLED, {"Retry-After": "2.0"})
        return shop, None

    async def _scopes(self, request: web.Request) -> web.Response:
        shop, failed = self._failure(request)
        if failed is not None:
            return failed
        assert shop is not None
        scopes = shop.scopes[:-1] if shop.scenario == "scope_removed" else shop.scopes
        return self._answer(shop, 200, {"access_scopes": [{"handle": s} for s in scopes]})

    async def _shop(self, request: web.Request) -> web.Response:
        shop, failed = self._failure(request)
        if failed is not None:
            return failed
        assert shop is not None
        asked = request.match_info["version"]
        served = asked
        retirement = version_retirement(asked, 12)
        if retirement is None or asked < self.oldest_version:
            served = self.oldest_version  # Shopify falls forward from a retired version
        headers = {VERSION_HEADER: served}
        if shop.scenario == "deprecated":
            headers[DEPRECATED_HEADER] = "https://shopify.dev/api/usage/versioning#deprecation-practices"
        body = {"shop": {"id": abs(hash(shop.domain)) % 10**11, "name": shop.name.title(),
                         "myshopify_domain": shop.domain, "plan_name": "basic"}}
        return self._answer(shop, 200, body, headers)

    async def _token(self, request: web.Request) -> web.Response:
        shop = self.shops.get(request.match_info["shop"])
        if shop is None:
            return web.json_response({"errors": "Not Found"}, status=404)
        form = await request.post()
        if form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client",
                                      "error_description": "Client authentication failed"},
                                     status=401)
        if form.get("grant_type") == "refresh_token":
            if shop.refresh_token is None or form.get("refresh_token") != shop.refresh_token:
                return web.json_response({"error": "invalid_grant",
                                          "error_description": "refresh token is invalid"},
                                         status=400)
            return web.json_response(self._grant(shop, expiring=True))
        code = str(form.get("code") or "")
        found = self.codes.pop(code, None)
        if found != shop.domain:
            return web.json_response({"error": "invalid_request",
                                      "error_description": "The authorization code was not "
                                                           "found or was already used"},
                                     status=400)
        if shop.scenario == "uninstalled":
            shop.scenario = "healthy"  # installed again
        return web.json_response(self._grant(shop, expiring=form.get("expiring") == "1"))

    def _grant(self, shop: SimShop, expiring: bool) -> dict[str, Any]:
        shop.access_token = "shpat_" + secrets.token_hex(16)
        body: dict[str, Any] = {"access_token": shop.access_token, "scope": ",".join(shop.scopes)}
        if expiring:
            shop.refresh_token = "shprt_" + secrets.token_hex(16)
            body.update(expires_in=3600, refresh_token=shop.refresh_token,
                        refresh_token_expires_in=7776000)
        return body

    async def _authorize(self, request: web.Request) -> web.Response:
        shop = self.shops.get(request.match_info["shop"])
        query = request.query
        if shop is None or query.get("client_id") != self.client_id:
            return web.Response(status=400, text="unknown shop or app\n")
        code = secrets.token_hex(16)
        self.codes[code] = shop.domain
        params = {"code": code, "host": "c2ltdWxhdG9y", "shop": shop.domain,
                  "state": query.get("state", ""), "timestamp": str(int(time.time()))}
        params["hmac"] = redirect_hmac(params, Secret(self.client_secret))
        raise web.HTTPFound(f"{query.get('redirect_uri', '')}?{urlencode(params)}")

    # --- control ------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([{"shop": s.domain, "scenario": s.scenario}
                                  for s in self.shops.values()])

    async def _set(self, request: web.Request) -> web.Response:
        shop = self.shops.get(request.match_info["shop"])
        if shop is None:
            return web.json_response({"error": "no such shop"}, status=404)
        try:
            scenario = (await request.json())["scenario"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'send {"scenario": NAME}'}, status=400)
        if scenario not in SCENARIOS:
            return web.json_response({"error": f"scenarios: {', '.join(SCENARIOS)}"},
                                     status=400)
        shop.scenario = scenario
        return web.Response(text=json.dumps({"shop": shop.domain, "scenario": scenario}),
                            content_type="application/json")

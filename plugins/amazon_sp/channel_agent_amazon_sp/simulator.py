"""A Selling Partner API simulator on loopback: Login with Amazon's token endpoint, the
Sellers API's ``marketplaceParticipations`` and the Seller Central consent page.

Each account has a scenario, chosen per account and changeable while running
(``PUT /_sim/accounts/<name>`` with ``{"scenario": ...}``):

scenario             token endpoint                participations
-------------------  ----------------------------  --------------------------------------------
healthy              200                           200, every marketplace
revoked              400 invalid_grant             (not reached)
marketplace_removed  200                           200 without the account's last marketplace
suspended            200                           200, first marketplace hasSuspendedListings
forbidden            200                           403 Unauthorized "Access to requested
                                                   resource is denied."
secret_expired       200                           403 "The LWA secret token you provided has
                                                   expired" (an expired application secret)
throttled            200                           429 QuotaExceeded, x-amzn-RateLimit-Limit
                                                   0.0167 and Retry-After 1
server_error         200                           503 ServiceUnavailable
malformed            200                           200 with an HTML page

A new consent (the ``authorization_code`` grant) gives the seller a new refresh token and
turns ``revoked`` into ``healthy``; other scenarios stay, as a marketplace the seller left
stays gone after a reconnect.

Error bodies are the shapes SP-API documents (developer-docs.amazon.com/sp-api/docs/
response-format) and public reports show (amzn/selling-partner-api-models #320, #4489).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from aiohttp import web

SCENARIOS = ("healthy", "revoked", "marketplace_removed", "suspended", "forbidden",
             "secret_expired", "throttled", "server_error", "malformed")
MARKETPLACES = {
    "ATVPDKIKX0DER": ("Amazon.com", "US", "na"),
    "A2EUQ1WTGCTBG2": ("Amazon.ca", "CA", "na"),
    "A1PA6795UKMFR9": ("Amazon.de", "DE", "eu"),
    "A1F83G8C2ARO7P": ("Amazon.co.uk", "GB", "eu"),
    "A1VC38T7YXB528": ("Amazon.co.jp", "JP", "fe"),
}
RATE_LIMIT = "0.0167"  # what x-amzn-RateLimit-Limit says for this operation


def sp_error(code: str, message: str, details: str = "") -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "details": details}]}


@dataclass
class SimSeller:
    name: str
    region: str
    marketplaces: list[str]
    scenario: str = "healthy"
    selling_partner_id: str = field(default_factory=lambda: "A" + secrets.token_hex(6).upper())
    refresh_token: str = field(default_factory=lambda: "Atzr|sim-sp-" + secrets.token_urlsafe(24))


class SpSimulator:
    def __init__(self, client_id: str, client_secret: str, application_id: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.application_id = application_id
        self.sellers: dict[str, SimSeller] = {}
        self.access: dict[str, str] = {}  # access token -> seller name
        self.codes: dict[str, str] = {}  # spapi_oauth_code -> seller name
        self.requests: list[tuple[str, str]] = []  # (path, seller) in order
        self.app = web.Application()
        self.app.router.add_post("/auth/o2/token", self._token)
        self.app.router.add_get("/sellers/v1/marketplaceParticipations", self._participations)
        self.app.router.add_get("/apps/authorize/consent", self._consent)
        self.app.router.add_get("/_sim/accounts", self._list)
        self.app.router.add_put("/_sim/accounts/{name}", self._set)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def add_seller(self, seller: SimSeller) -> SimSeller:
        self.sellers[seller.name] = seller
        return seller

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def endpoints(self) -> dict[str, str]:
        return {"token_url": f"{self.base_url}/auth/o2/token",
                "authorize_url": f"{self.base_url}/apps/authorize/consent",
                "api_url": self.base_url}

    # --- Login with Amazon ----------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                   self.client_secret):
            return web.json_response({"error": "invalid_client",
                                      "error_description": "Client authentication failed"},
                                     status=401)
        if form.get("grant_type") == "authorization_code":
            name = self.codes.pop(form.get("code", ""), None)
            if name is None:
                return web.json_response({"error": "invalid_grant",
                                          "error_description": "The request has an invalid "
                                                               "grant parameter : code"},
                                         status=400)
            seller = self.sellers[name]
            seller.refresh_token = "Atzr|sim-sp-" + secrets.token_urlsafe(24)
            if seller.scenario == "revoked":  # as with Ads: a new consent mends only that
                seller.scenario = "healthy"
            return self._grant(seller, refresh=True)
        seller = next((s for s in self.sellers.values()
                       if s.refresh_token == form.get("refresh_token")), None)
        if seller is None or seller.scenario == "revoked":
            return web.json_response({"error": "invalid_grant",
                                      "error_description": "The request has an invalid grant "
                                                           "parameter : refresh_token"},
                                     status=400)
        self.requests.append(("token", seller.name))
        return self._grant(seller, refresh=False)

    def _grant(self, seller: SimSeller, refresh: bool) -> web.Response:
        token = "Atza|sim-sp-" + secrets.token_urlsafe(24)
        self.access[token] = seller.name
        body = {"access_token": token, "token_type": "bearer", "expires_in": 3600}
        if refresh:
            body["refresh_token"] = seller.refresh_token
        return web.json_response(body)

    # --- Sellers API -----------------------------------------------------------------------

    async def _participations(self, request: web.Request) -> web.Response:
        name = self.access.get(request.headers.get("x-amz-access-token", ""))
        if name is None:
            return web.json_response(sp_error("Unauthorized", "Access to requested resource "
                                                              "is denied.",
                                              "The access token you provided is revoked, "
                                              "malformed or invalid."), status=403)
        seller = self.sellers[name]
        self.requests.append(("participations", name))
        headers = {"x-amzn-RateLimit-Limit": RATE_LIMIT,
                   "x-amzn-RequestId": secrets.token_hex(8)}
        scenario = seller.scenario
        if scenario == "forbidden":
            return web.json_response(sp_error("Unauthorized", "Access to requested resource "
                                                              "is denied.", ""),
                                     status=403, headers=headers)
        if scenario == "secret_expired":
            return web.json_response(sp_error("Unauthorized", "Access to requested resource "
                                                              "is denied.",
                                              "The LWA secret token you provided has expired. "
                                              "Please rotate your LWA credentials."),
                                     status=403, headers=headers)
        if scenario == "throttled":
            return web.json_response(sp_error("QuotaExceeded", "You exceeded your quota for "
                                                               "the requested resource."),
                                     status=429, headers={**headers, "Retry-After": "1"})
        if scenario == "server_error":
            return web.json_response(sp_error("ServiceUnavailable", "Service temporarily "
                                                                    "unavailable."),
                                     status=503, headers=headers)
        if scenario == "malformed":
            return web.Response(text="<html><body>Sign in</body></html>",
                                content_type="text/html", headers=headers)
        ids = list(seller.marketplaces)
        if scenario == "marketplace_removed":
            ids = ids[:-1]
        payload = []
        for i, marketplace_id in enumerate(ids):
            name_, country, _ = MARKETPLACES.get(marketplace_id, (marketplace_id, "", ""))
            payload.append({
                "marketplace": {"id": marketplace_id, "name": name_, "countryCode": country,
                                "defaultCurrencyCode": "USD", "defaultLanguageCode": "en_US",
                                "domainName": name_.lower()},
                "participation": {"isParticipating": True,
                                  "hasSuspendedListings": scenario == "suspended" and i == 0},
            })
        return web.json_response({"payload": payload}, headers=headers)

    # --- Seller Central consent ------------------------------------------------------------

    async def _consent(self, request: web.Request) -> web.Response:
        """Approves at once for the seller named by ``?sim_account=`` (the browser of a test;
        the Amazon Ads simulator's parameter, so tests/fake_browser.py plays both), or
        declines with ``?sim_decline=1``; redirects with spapi_oauth_code, selling_partner_id
        and state."""
        query = request.query
        if query.get("application_id") != self.application_id:
            return web.Response(status=400, text="unknown application_id")
        seller = self.sellers.get(query.get("sim_account", ""))
        redirect = query.get("redirect_uri", "")
        if not redirect or (seller is None and not query.get("sim_decline")):
            return web.Response(status=400, text="sim_account and redirect_uri are required")
        if query.get("sim_decline"):
            params = {"error": "access_denied", "state": query.get("state", "")}
        else:
            assert seller is not None
            code = "ANsim" + secrets.token_urlsafe(12)
            self.codes[code] = seller.name
            params = {"spapi_oauth_code": code, "selling_partner_id": seller.selling_partner_id,
                      "state": query.get("state", "")}
        raise web.HTTPFound(f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(params)}")

    # --- control API -----------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": s.name, "region": s.region, "scenario": s.scenario,
                                   "marketplaces": s.marketplaces}
                                  for s in self.sellers.values()])

    async def _set(self, request: web.Request) -> web.Response:
        seller = self.sellers.get(request.match_info["name"])
        if seller is None:
            return web.json_response({"error": "no such account"}, status=404)
        try:
            scenario = json.loads(await request.read())["scenario"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'send {"scenario": ...}'}, status=400)
        if scenario not in SCENARIOS:
            return web.json_response({"error": f"scenarios: {', '.join(SCENARIOS)}"},
                                     status=400)
        seller.scenario = scenario
        return web.json_response({"name": seller.name, "scenario": scenario})

"""A simulator of Login with Amazon (LwA) and the Amazon Ads API, served over real HTTP.

One :class:`Simulator` plays the LwA token endpoint, the consent page and the three regional
Ads API hosts (as path prefixes ``/na``, ``/eu``, ``/fe``). Status codes, bodies and headers
follow ``shared/reference/amazon-ads-api.md``. Accounts are known by their refresh token; each
has a scenario that decides how the simulator answers for it:

========================  ============================  ===================================
scenario                  token endpoint (refresh)      Ads API (profiles, campaigns/list)
========================  ============================  ===================================
healthy                   200 access token              200
revoked                   400 invalid_grant             401 Authentication failed (tokens
                                                        issued before are dead)
client_rotated            401 invalid_client            401 Authentication failed (same)
profile_removed           200                           profiles omits the first profile;
                                                        campaigns/list scoped to it: 401
                                                        Not authorized to access scope
forbidden                 200                           profiles 200; campaigns/list 403
throttled                 429 + Retry-After             429 + Retry-After
throttled_no_retry_after  429, no Retry-After           429, no Retry-After
server_error              503 temporarily_unavailable   500 ``{"code":"500",...}``
slow                      sleeps slow_seconds, then     sleeps slow_seconds, then answers
                          answers
malformed_json            200, truncated JSON body      200, truncated JSON body
html_gateway              502 HTML Bad Gateway page     502 HTML Bad Gateway page
transient_401             200                           first profiles call of each access
                                                        token: 401 {"message":"Unauthorized"};
                                                        the next token issued after such a
                                                        401 works at once (refresh + retry
                                                        heals it)
unauthorized              200                           401 Not authorized to access scope
server_error_burst        the account's next ``burst_length`` requests get the server_error
                          answers, then it is healthy (again after each set_scenario)
connection_reset          the answer is computed, then the connection is reset (TCP RST)
truncated_body            the answer's headers promise its full length, half the body
                          is sent, then the connection closes
trickle                   the answer, one byte every ``trickle_seconds``
leaky_errors              400 invalid_grant whose       401 whose details echo the access
                          description echoes the        token (a hostile or buggy provider)
                          refresh token and client
                          secret
========================  ============================  ===================================

Requests that fail before an account is known (unknown refresh token or access token, wrong
client id/secret, missing parameters) get the plain error whatever the scenarios are.

Consent (``GET /ap/oa``) stands in for Amazon's login page: ``sim_account=<name>`` picks the
consenting account, ``sim_decline=1`` declines; without ``sim_account`` a small HTML page links
to every account. The ``authorization_code`` grant ignores the account's scenario except
``client_rotated`` (401) and ``revoked``: a new consent gives a revoked account a new refresh
token and scenario ``healthy``.

Control API: ``GET /_sim/accounts``, ``PUT /_sim/accounts/{name}`` with ``{"scenario": ...}``,
``GET /_sim/scenarios``, ``GET /_sim/requests`` (counts by path, account and status, and by
second of arrival), ``GET /_sim/stats`` (counts by path only: cheap with many accounts).

``latency`` (seconds, default 0) delays every LwA and Ads API answer, to stand in for the
network between the agent and Amazon in benchmarks.

Standalone: ``python -m channel_agent_amazon_ads.simulator --listen 127.0.0.1:0 --accounts
accounts.json`` (a JSON list of :class:`SimAccount` fields).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import secrets
import signal
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

SCENARIOS = (
    "healthy",
    "revoked",
    "client_rotated",
    "profile_removed",
    "forbidden",
    "throttled",
    "throttled_no_retry_after",
    "server_error",
    "slow",
    "malformed_json",
    "html_gateway",
    "transient_401",
    "unauthorized",
    "server_error_burst",
    "connection_reset",
    "truncated_body",
    "trickle",
    "leaky_errors",
)
# Scenarios that break the connection carrying the answer, whatever the answer is.
CONNECTION_FAULTS = frozenset({"connection_reset", "truncated_body", "trickle"})
NO_ANSWER = 444  # the status counted for a reset connection (nginx's "closed, no answer")
REGIONS = ("na", "eu", "fe")
ADS_SCOPE = "advertising::campaign_management"
SP_CAMPAIGN_MEDIA_TYPE = "application/vnd.spCampaign.v3+json"
ACCESS_TOKEN_TTL = 3600
CODE_TTL = 300
# Expired access tokens are dropped at most this often (not at every issue: 10,000 accounts).
PRUNE_INTERVAL = 60.0

# (countryCode, currencyCode, timezone, marketplaceStringId) per region, cycled over profiles
_MARKETPLACES = {
    "na": [
        ("US", "USD", "America/Los_Angeles", "ATVPDKIKX0DER"),
        ("CA", "CAD", "America/Los_Angeles", "A2EUQ1WTGCTBG2"),
        ("MX", "MXN", "America/Los_Angeles", "A1AM78C64UM0Y8"),
    ],
    "eu": [
        ("UK", "GBP", "Europe/London", "A1F83G8C2ARO7P"),
        ("DE", "EUR", "Europe/Paris", "A1PA6795UKMFR9"),
        ("FR", "EUR", "Europe/Paris", "A13V1IB3VIYZZH"),
    ],
    "fe": [
        ("JP", "JPY", "Asia/Tokyo", "A1VC38T7YXB528"),
        ("AU", "AUD", "Australia/Sydney", "A39IBJ37TRP1C6"),
    ],
}

# the account a request turned out to be about, for the request counts
_current_account: ContextVar[str | None] = ContextVar("sim_account", default=None)
_GATEWAY_SCENARIOS = frozenset(
    {"throttled", "throttled_no_retry_after", "server_error", "malformed_json", "html_gateway"}
)
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
_INVALID_GRANT_REFRESH = (
    "The request has an invalid grant parameter : refresh_token. "
    "User may have revoked or didn't grant the permission."
)


@dataclass
class SimAccount:
    """An advertiser who consented to the simulated app. All profiles live in ``region``."""

    name: str
    refresh_token: str
    region: str = "na"
    profiles: list[int] = field(default_factory=list)
    scenario: str = "healthy"

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r} (one of {', '.join(REGIONS)})")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}")
        self.profiles = [int(p) for p in self.profiles]

    @classmethod
    def create(
        cls, name: str, region: str = "na", profiles: list[int] | None = None,
        scenario: str = "healthy",
    ) -> SimAccount:
        """An account with a fresh random refresh token."""
        return cls(name, new_refresh_token(name), region, list(profiles or []), scenario)

    def public(self) -> dict[str, Any]:
        """What the control API shows: everything but the refresh token."""
        return {"name": self.name, "region": self.region, "scenario": self.scenario,
                "profiles": list(self.profiles)}


def new_refresh_token(name: str) -> str:
    return f"Atzr|sim-{name}-{secrets.token_urlsafe(32)}"


@dataclass
class _AccessToken:
    account: str
    expires_at: float
    # transient_401: the first profiles call with this token fails
    fails_once: bool = True


@dataclass
class _AuthCode:
    account: str
    redirect_uri: str
    code_challenge: str | None
    expires_at: float


def _request_id() -> str:
    return secrets.token_hex(10).upper()


def _json(status: int, body: Any, headers: dict[str, str] | None = None,
          content_type: str = "application/json") -> web.Response:
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                        content_type=content_type,
                        charset="UTF-8", headers=headers)


def _lwa_error(status: int, error: str, description: str) -> web.Response:
    return _json(status, {"error": error, "error_description": description})


def _ads_error(status: int, details: str) -> web.Response:
    request_id = _request_id()
    return _json(status, {"code": str(status), "details": details, "requestId": request_id},
                 headers={"x-amzn-RequestId": request_id})


def _invalid_client() -> web.Response:
    return _lwa_error(401, "invalid_client", "Client authentication failed")


def _missing(param: str) -> web.Response:
    return _lwa_error(400, "invalid_request",
                      f"The request is missing a required parameter : {param}")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Simulator:
    """LwA + Amazon Ads API for any number of :class:`SimAccount`, all regions on one port."""

    def __init__(
        self,
        client_id: str = "amzn1.application-oa2-client.sim",
        client_secret: str = "sim-client-secret",
        *,
        slow_seconds: float = 60.0,
        retry_after: int = 1,
        trickle_seconds: float = 0.5,
        burst_length: int = 3,
        latency: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.trickle_seconds = trickle_seconds
        self.burst_length = burst_length
        self.latency = latency
        self.clock: Callable[[], float] = time.time
        self.base_url = ""
        # (path, account name or None, HTTP status) -> number of requests
        self.counts: Counter[tuple[str, str | None, int]] = Counter()
        # (time.monotonic() at arrival, path, account, status) of the latest requests
        self.history: deque[tuple[float, str, str | None, int]] = deque(maxlen=10_000)
        self._burst_left: dict[str, int] = {}  # server_error_burst: failures still to come
        self.by_path: Counter[str] = Counter()  # every LwA / Ads API request, by path
        self._accounts: dict[str, SimAccount] = {}
        self._by_token: dict[str, SimAccount] = {}
        self._tokens: dict[str, _AccessToken] = {}
        self._pruned_at = 0.0
        self._codes: dict[str, _AuthCode] = {}
        self._transient_hit: set[str] = set()  # accounts whose last profiles call got a 401
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # -- accounts ---------------------------------------------------------------------------

    def add_account(self, account: SimAccount) -> None:
        if account.name in self._accounts:
            raise ValueError(f"account {account.name!r} already exists")
        self._accounts[account.name] = account
        self._by_token[account.refresh_token] = account

    def account(self, name: str) -> SimAccount:
        try:
            return self._accounts[name]
        except KeyError:
            raise ValueError(f"unknown account {name!r}") from None

    @property
    def accounts(self) -> list[SimAccount]:
        return list(self._accounts.values())

    def set_scenario(self, name: str, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
        self.account(name).scenario = scenario
        self._burst_left.pop(name, None)

    def _by_refresh_token(self, token: str) -> SimAccount | None:
        account = self._by_token.get(token)
        if account is not None and account.refresh_token == token:
            return account
        # the token was changed behind the index's back (a new consent, a test)
        account = next((a for a in self._accounts.values() if a.refresh_token == token), None)
        if account is not None:
            self._by_token[token] = account
        return account

    def count(self, path: str | None = None, account: str | None = None,
              status: int | None = None) -> int:
        """Requests seen, filtered by exact path, account name and/or status."""
        return sum(
            n for (p, a, s), n in self.counts.items()
            if (path is None or p == path) and (account is None or a == account)
            and (status is None or s == status)
        )

    def per_second(self) -> dict[int, int]:
        """LwA and Ads API requests among the latest (``history``) by whole second of
        arrival (``int(time.monotonic())``)."""
        seconds = Counter(int(t) for t, path, _, _ in self.history
                          if not path.startswith("/_sim/"))
        return dict(sorted(seconds.items()))

    def endpoints(self) -> dict[str, Any]:
        base = self.base_url
        return {
            "token_url": f"{base}/auth/o2/token",
            "authorize_url": f"{base}/ap/oa",
            "api_url": {region: f"{base}/{region}" for region in REGIONS},
        }

    # -- server -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count_middleware])
        app.router.add_post("/auth/o2/token", self._token)
        app.router.add_get("/ap/oa", self._authorize)
        app.router.add_get("/{region:na|eu|fe}/v2/profiles", self._profiles)
        app.router.add_post("/{region:na|eu|fe}/sp/campaigns/list", self._campaigns_list)
        app.router.add_get("/_sim/accounts", self._control_accounts)
        app.router.add_put("/_sim/accounts/{name}", self._control_set_scenario)
        app.router.add_get("/_sim/scenarios", self._control_scenarios)
        app.router.add_get("/_sim/requests", self._control_requests)
        app.router.add_get("/_sim/stats", self._control_stats)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); return the base URL."""
        self._stopping = asyncio.Event()
        # handler_cancellation: a client that gives up on a "slow" answer frees its handler
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=1.0,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the simulator stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    @web.middleware
    async def _count_middleware(
        self, request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        status = 500
        arrived = time.monotonic()
        reset = _current_account.set(None)
        control = request.path.startswith("/_sim/")
        if not control:
            self.by_path[request.path] += 1
        try:
            if self.latency and not control:
                await asyncio.sleep(self.latency)
            response = await handler(request)
            account = self._accounts.get(_current_account.get() or "")
            if account is not None and account.scenario in CONNECTION_FAULTS:
                response = await self._break_connection(request, response, account.scenario)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # client went away before the answer
            raise
        finally:
            self.counts[(request.path, _current_account.get(), status)] += 1
            self.history.append((arrived, request.path, _current_account.get(), status))
            _current_account.reset(reset)

    async def _break_connection(self, request: web.Request, answer: web.StreamResponse,
                                fault: str) -> web.StreamResponse:
        """Deliver ``answer`` the way the connection fault ``fault`` spoils it."""
        transport = request.transport
        if fault == "connection_reset" or transport is None:
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if transport is not None:
                transport.abort()
            return web.Response(status=NO_ANSWER)
        body = answer.body if isinstance(answer, web.Response) else b""
        body = body if isinstance(body, bytes) else b""
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        stream = web.StreamResponse(status=answer.status, headers=headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        if fault == "truncated_body":
            await stream.write(body[: len(body) // 2])
            transport.close()
            return stream
        for i in range(len(body)):  # trickle
            await stream.write(body[i:i + 1])
            await self._sleep(self.trickle_seconds)
        await stream.write_eof()
        return stream

    # -- scenario answers shared by LwA and the Ads API -------------------------------------

    async def _scenario_response(self, account: SimAccount, *, api: bool) -> web.Response | None:
        """The gateway-level answer the account's scenario forces, or None to go on."""
        scenario = account.scenario
        if scenario == "server_error_burst":
            left = self._burst_left.get(account.name, self.burst_length)
            if left <= 0:
                return None
            self._burst_left[account.name] = left - 1
            scenario = "server_error"
        if scenario == "slow":
            await self._sleep(self.slow_seconds)
            return None
        if scenario not in _GATEWAY_SCENARIOS:
            return None
        if scenario in ("throttled", "throttled_no_retry_after"):
            headers = {"x-amzn-ErrorType": "AccessDeniedException",
                       "amazon-advertising-api-throttled": "true",
                       "x-amzn-RequestId": _request_id()}
            if scenario == "throttled":
                headers["Retry-After"] = str(self.retry_after)
            return _json(429, {"message": "Too Many Requests"}, headers=headers)
        if scenario == "server_error":
            if api:
                return _ads_error(500, "Internal Server Error")
            return _lwa_error(503, "temporarily_unavailable",
                              "The authorization server is temporarily unavailable.")
        if scenario == "malformed_json":
            text = ('[{"profileId":' if api else '{"access_token":"Atza|') + secrets.token_hex(8)
            return web.Response(status=200, text=text, content_type="application/json",
                                charset="UTF-8")
        return web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html",
                            charset="utf-8")

    # -- Login with Amazon ------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        params = await self._token_params(request)
        if params is None:
            return _lwa_error(400, "invalid_request", "The request body could not be parsed.")
        client_id, client_secret = self._client_credentials(request, params)
        grant_type = params.get("grant_type")
        if not grant_type:
            return _missing("grant_type")
        if grant_type not in ("refresh_token", "authorization_code"):
            return _lwa_error(400, "unsupported_grant_type",
                              f"The authorization grant type is not supported : {grant_type}")
        if not client_id:
            return _missing("client_id")
        if not client_secret:
            return _missing("client_secret")
        if client_id != self.client_id or client_secret != self.client_secret:
            return _invalid_client()
        if grant_type == "refresh_token":
            return await self._refresh_grant(request, params)
        return self._code_grant(request, params)

    @staticmethod
    async def _token_params(request: web.Request) -> dict[str, str] | None:
        text = await request.text()
        if request.content_type == "application/json":
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            return {str(k): str(v) for k, v in data.items() if v is not None}
        return dict(parse_qsl(text, keep_blank_values=True))

    @staticmethod
    def _client_credentials(request: web.Request,
                            params: dict[str, str]) -> tuple[str | None, str | None]:
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            client_id, _, client_secret = decoded.partition(":")
            return client_id, client_secret
        return params.get("client_id"), params.get("client_secret")

    async def _refresh_grant(self, request: web.Request, params: dict[str, str]) -> web.Response:
        refresh_token = params.get("refresh_token")
        if not refresh_token:
            return _missing("refresh_token")
        account = self._by_refresh_token(refresh_token)
        if account is None:
            return _lwa_error(400, "invalid_grant", _INVALID_GRANT_REFRESH)
        _current_account.set(account.name)
        forced = await self._scenario_response(account, api=False)
        if forced is not None:
            return forced
        if account.scenario == "revoked":
            return _lwa_error(400, "invalid_grant", _INVALID_GRANT_REFRESH)
        if account.scenario == "client_rotated":
            return _invalid_client()
        if account.scenario == "leaky_errors":
            return _lwa_error(400, "invalid_grant",
                              f"refresh_token {refresh_token} of client {self.client_id} "
                              f"(secret {self.client_secret}) was revoked")
        return self._issue(account)

    def _issue(self, account: SimAccount) -> web.Response:
        now = self.clock()
        if now - self._pruned_at >= PRUNE_INTERVAL:
            self._tokens = {t: v for t, v in self._tokens.items() if v.expires_at > now}
            self._pruned_at = now
        access_token = f"Atza|{secrets.token_urlsafe(96)}"
        # after a transient 401 the next token works at once, so "refresh and retry once" heals
        fails_once = account.name not in self._transient_hit
        self._transient_hit.discard(account.name)
        self._tokens[access_token] = _AccessToken(account.name, now + ACCESS_TOKEN_TTL,
                                                  fails_once)
        body = {"access_token": access_token, "token_type": "bearer",
                "expires_in": ACCESS_TOKEN_TTL, "refresh_token": account.refresh_token}
        return _json(200, body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _code_grant(self, request: web.Request, params: dict[str, str]) -> web.Response:
        code = params.get("code")
        if not code:
            return _missing("code")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return _missing("redirect_uri")
        grant = self._codes.pop(code, None)  # single use, even when the exchange fails
        if grant is None or grant.expires_at <= self.clock():
            return _lwa_error(400, "invalid_grant",
                              "The request has an invalid grant parameter : code")
        _current_account.set(grant.account)
        if grant.redirect_uri != redirect_uri:
            return _lwa_error(400, "invalid_grant",
                              "The request has an invalid grant parameter : redirect_uri")
        if grant.code_challenge is not None:
            verifier = params.get("code_verifier")
            if not verifier:
                return _missing("code_verifier")
            if _s256(verifier) != grant.code_challenge:
                return _lwa_error(400, "invalid_grant",
                                  "The request has an invalid grant parameter : code_verifier")
        account = self._accounts.get(grant.account)
        if account is None:
            return _lwa_error(400, "invalid_grant",
                              "The request has an invalid grant parameter : code")
        if account.scenario == "client_rotated":
            return _invalid_client()
        if account.scenario == "revoked":
            # a fresh consent: the old refresh token stays dead, the account works again
            account.refresh_token = new_refresh_token(account.name)
            self._by_token[account.refresh_token] = account
            account.scenario = "healthy"
        return self._issue(account)

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id:
            return web.Response(status=400, content_type="text/html",
                                text="<html><body><h1>400 Bad Request</h1>"
                                     "<p>An unknown client_id was provided.</p></body></html>")
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return web.Response(status=400, content_type="text/html",
                                text="<html><body><h1>400 Bad Request</h1>"
                                     "<p>The redirect_uri is missing or invalid.</p></body></html>")
        state = q.get("state")

        def back(**params: str) -> web.Response:
            if state is not None:
                params["state"] = state
            sep = "&" if "?" in redirect_uri else "?"
            return web.Response(status=302,
                                headers={"Location": f"{redirect_uri}{sep}{urlencode(params)}"})

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type",
                        error_description="The response_type must be code.")
        if q.get("scope") != ADS_SCOPE:
            return back(error="invalid_scope",
                        error_description="An unknown scope was requested.")
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            return back(error="invalid_request",
                        error_description="code_challenge_method must be S256.")
        if q.get("sim_decline") == "1":
            return back(error="access_denied",
                        error_description="The user has denied the requested scope.")
        name = q.get("sim_account")
        if name is None:
            return self._login_page(request)
        if name not in self._accounts:
            return web.Response(status=400, content_type="text/html",
                                text=f"<html><body><p>No simulated account named "
                                     f"{_html_escape(name)}.</p></body></html>")
        _current_account.set(name)
        code = "ANsim" + secrets.token_urlsafe(18)
        self._codes[code] = _AuthCode(name, redirect_uri, challenge, self.clock() + CODE_TTL)
        return back(code=code, scope=ADS_SCOPE)

    def _login_page(self, request: web.Request) -> web.Response:
        """Stands in for Amazon's sign-in and consent page."""
        links = []
        for name in self._accounts:
            url = request.rel_url.update_query(sim_account=name)
            links.append(f'<li><a href="{_html_escape(str(url))}">Sign in as '
                         f"{_html_escape(name)} and allow</a></li>")
        decline = request.rel_url.update_query(sim_decline="1")
        links.append(f'<li><a href="{_html_escape(str(decline))}">Cancel</a></li>')
        html = ("<html><head><title>Amazon Sign-In (simulator)</title></head><body>"
                "<h1>Login with Amazon (simulator)</h1><ul>" + "".join(links)
                + "</ul></body></html>")
        return web.Response(text=html, content_type="text/html")

    # -- Amazon Ads API ---------------------------------------------------------------------

    async def _api_account(self, request: web.Request) -> SimAccount | web.Response:
        """Authenticate an Ads API call; apply the account's scenario."""
        token = request.headers.get("Authorization", "")
        entry = self._tokens.get(token[7:]) if token[:7].lower() == "bearer " else None
        if request.headers.get("Amazon-Advertising-API-ClientId") != self.client_id:
            return _ads_error(401, "Authentication failed")
        if entry is None or entry.expires_at <= self.clock():
            return _ads_error(401, "Authentication failed")
        account = self._accounts.get(entry.account)
        if account is None:
            return _ads_error(401, "Authentication failed")
        _current_account.set(account.name)
        forced = await self._scenario_response(account, api=True)
        if forced is not None:
            return forced
        if account.scenario in ("revoked", "client_rotated"):
            return _ads_error(401, "Authentication failed")
        if account.scenario == "unauthorized":
            return _ads_error(401, "Not authorized to access scope")
        if account.scenario == "leaky_errors":
            return _ads_error(401, f"Authentication failed for {token}")
        return account

    def _visible_profiles(self, account: SimAccount, region: str) -> list[int]:
        if account.region != region:
            return []
        if account.scenario == "profile_removed":
            return account.profiles[1:]
        return list(account.profiles)

    async def _profiles(self, request: web.Request) -> web.Response:
        account = await self._api_account(request)
        if isinstance(account, web.Response):
            return account
        if account.scenario == "transient_401":
            entry = self._tokens[request.headers["Authorization"][7:]]
            if entry.fails_once:
                entry.fails_once = False
                self._transient_hit.add(account.name)
                return _json(401, {"message": "Unauthorized"},
                             headers={"x-amzn-RequestId": _request_id()})
        region = request.match_info["region"]
        markets = _MARKETPLACES[region]
        body = []
        for i, profile_id in enumerate(self._visible_profiles(account, region)):
            country, currency, timezone, marketplace = markets[i % len(markets)]
            body.append({
                "profileId": profile_id,
                "countryCode": country,
                "currencyCode": currency,
                "timezone": timezone,
                "accountInfo": {
                    "marketplaceStringId": marketplace,
                    "id": "A" + hashlib.sha256(account.name.encode()).hexdigest()[:13].upper(),
                    "type": "seller",
                    "name": account.name,
                    "validPaymentMethod": True,
                },
            })
        return _json(200, body, headers={"x-amzn-RequestId": _request_id()})

    async def _campaigns_list(self, request: web.Request) -> web.Response:
        account = await self._api_account(request)
        if isinstance(account, web.Response):
            return account
        scope = request.headers.get("Amazon-Advertising-API-Scope")
        if not scope:
            return _ads_error(401, "Scope header is missing")
        visible = self._visible_profiles(account, request.match_info["region"])
        if not scope.isdigit() or int(scope) not in visible:
            return _ads_error(401, "Not authorized to access scope")
        if request.content_type.lower() != SP_CAMPAIGN_MEDIA_TYPE.lower():
            return _ads_error(415, f"Content-Type must be {SP_CAMPAIGN_MEDIA_TYPE}")
        if SP_CAMPAIGN_MEDIA_TYPE.lower() not in request.headers.get("Accept", "").lower():
            return _ads_error(406, f"Accept must be {SP_CAMPAIGN_MEDIA_TYPE}")
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            return _ads_error(400, "Request body is not valid JSON")
        max_results = body.get("maxResults", 100) if isinstance(body, dict) else None
        if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
            return _ads_error(400, "maxResults must be a positive integer")
        if account.scenario == "forbidden":
            return _ads_error(403, "Advertiser is not authorized for Sponsored Products.")
        campaign = {
            "campaignId": f"{scope}01",
            "name": f"{account.name} always-on",
            "state": "ENABLED",
            "targetingType": "AUTO",
            "startDate": "2025-01-01",
            "budget": {"budget": 10.0, "budgetType": "DAILY"},
            "dynamicBidding": {"strategy": "LEGACY_FOR_SALES"},
        }
        return _json(200, {"campaigns": [campaign][:max_results], "nextToken": None},
                     content_type=SP_CAMPAIGN_MEDIA_TYPE,
                     headers={"x-amzn-RequestId": _request_id()})

    # -- control API ------------------------------------------------------------------------

    async def _control_accounts(self, request: web.Request) -> web.Response:
        return web.json_response([a.public() for a in self._accounts.values()])

    async def _control_scenarios(self, request: web.Request) -> web.Response:
        return web.json_response(list(SCENARIOS))

    async def _control_set_scenario(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._accounts:
            return web.json_response({"error": f"unknown account {name!r}"}, status=404)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        scenario = body.get("scenario") if isinstance(body, dict) else None
        if scenario not in SCENARIOS:
            return web.json_response(
                {"error": f"unknown scenario {scenario!r}", "scenarios": list(SCENARIOS)},
                status=400)
        self.set_scenario(name, scenario)
        return web.json_response(self._accounts[name].public())

    async def _control_requests(self, request: web.Request) -> web.Response:
        by_status: Counter[str] = Counter()
        rows = []
        for (path, account, status), n in sorted(self.counts.items(),
                                                 key=lambda kv: (kv[0][0], str(kv[0][1]),
                                                                 kv[0][2])):
            rows.append({"path": path, "account": account, "status": status, "count": n})
            by_status[str(status)] += n
        per_second = {str(second): n for second, n in self.per_second().items()}
        return web.json_response({"requests": rows, "by_status": dict(by_status),
                                  "per_second": per_second})


    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": sum(self.by_path.values()),
                                  "by_path": dict(self.by_path)})


def _html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


class SimulatorThread:
    """Runs a :class:`Simulator` on its own event loop in a daemon thread (for sync code)."""

    def __init__(self, simulator: Simulator | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.simulator = simulator or Simulator()
        self.host = host
        self.port = port
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="amazon-ads-simulator",
                                        daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.simulator.start(self.host, self.port), loop)
        self.base_url = future.result(timeout=10)
        return self.base_url

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_accounts(path: Path) -> list[SimAccount]:
    """Accounts from a JSON list of :class:`SimAccount` fields."""
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of accounts")
    return [SimAccount(**item) for item in data]


async def _serve(sim: Simulator, host: str, port: int) -> None:
    url = await sim.start(host, port)
    print(f"simulator listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m channel_agent_amazon_ads.simulator",
        description="Simulated Login with Amazon + Amazon Ads API on loopback.")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any free)")
    parser.add_argument("--accounts", type=Path, help="JSON list of SimAccount objects")
    parser.add_argument("--client-id", default="amzn1.application-oa2-client.sim")
    parser.add_argument("--client-secret", default="sim-client-secret")
    parser.add_argument("--slow-seconds", type=float, default=60.0)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added before every LwA / Ads API answer")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error("--listen must be host:port")
    sim = Simulator(args.client_id, args.client_secret, slow_seconds=args.slow_seconds,
                    retry_after=args.retry_after, latency=args.latency)
    try:
        for account in load_accounts(args.accounts) if args.accounts else []:
            sim.add_account(account)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(f"--accounts: {exc}")
    asyncio.run(_serve(sim, host, int(port)))

if __name__ == "__main__":
    main()

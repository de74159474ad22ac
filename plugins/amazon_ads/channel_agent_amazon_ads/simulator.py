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

The parts, by what they simulate: :mod:`~channel_agent_amazon_ads.sim_lwa` (token endpoint,
consent page), :mod:`~channel_agent_amazon_ads.sim_ads` (Ads API),
:mod:`~channel_agent_amazon_ads.sim_faults` (the scenarios' gateway errors and broken
connections), :mod:`~channel_agent_amazon_ads.sim_common` (accounts, scenarios, error bodies);
this module wires them into one server with the control API.

Standalone: ``python -m channel_agent_amazon_ads.simulator --listen 127.0.0.1:0 --accounts
accounts.json`` (a JSON list of :class:`SimAccount` fields).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from channel_agent_amazon_ads.sim_ads import AdsApiEndpoints
from channel_agent_amazon_ads.sim_common import (
    CONNECTION_FAULTS,
    REGIONS,
    SCENARIOS,
    AccessToken,
    AuthCode,
    SimAccount,
    current_account,
)
from channel_agent_amazon_ads.sim_faults import ScenarioAnswers
from channel_agent_amazon_ads.sim_lwa import LwaEndpoints


class Simulator(ScenarioAnswers, LwaEndpoints, AdsApiEndpoints):
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
        self._tokens: dict[str, AccessToken] = {}
        self._pruned_at = 0.0
        self._codes: dict[str, AuthCode] = {}
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
        reset = current_account.set(None)
        control = request.path.startswith("/_sim/")
        if not control:
            self.by_path[request.path] += 1
        try:
            if self.latency and not control:
                await asyncio.sleep(self.latency)
            response = await handler(request)
            account = self._accounts.get(current_account.get() or "")
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
            self.counts[(request.path, current_account.get(), status)] += 1
            self.history.append((arrived, request.path, current_account.get(), status))
            current_account.reset(reset)



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

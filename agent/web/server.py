"""The HTTP server: /metrics, the pages (``agent.web.landing``, ``agent.web.account_page``),
the JSON API (``agent.web.api``), the health endpoints and the redirect of reconnect links
(``agent.web.oauth_callback``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from aiohttp import web

from agent.freshness.heartbeat import HeartbeatRejected
from agent.metrics.exposition import Exposition
from agent.metrics.formats import negotiate
from agent.reconnect import CALLBACK_PATH
from agent.redact import redact
from agent.service import AgentService
from agent.status import account_status
from agent.storage.commits import StateWriteError
from agent.web import api
from agent.web.account_page import account_page, create_reconnect_link
from agent.web.appkeys import INDEX, PAGES, SERVICE, PageSettings
from agent.web.auth import WebSecurity, self_authenticating
from agent.web.fleet_index import AccountIndex
from agent.web.landing import landing_page
from agent.web.oauth_callback import callback_handler

log = logging.getLogger(__name__)
INDEX_REFRESH = 1.0  # seconds between two folds of the fleet's changes into the account index
EXPOSITION = web.AppKey("exposition", Exposition)
MAX_BODY = 64 * 1024  # request bodies past this get 413 ...
MAX_BATCH_BODY = 4 * 1024 * 1024  # ... except a batch of heartbeats: up to this
MAX_BATCH = 10_000  # heartbeats in one batch
# bytes of /metrics handed to the socket at a time: each write may give the loop a turn
# (checks, the background), so fewer writes, fewer waits in the tail (docs/performance.md)
WRITE_SIZE = 1024 * 1024


def make_app(service: AgentService, security: WebSecurity | None = None,
             pages: PageSettings | None = None) -> web.Application:
    """The agent's HTTP API. Without ``security`` (no web config) nothing is protected."""
    security = security or WebSecurity(None)
    app = web.Application(client_max_size=MAX_BATCH_BODY, middlewares=[security.middleware])
    app.on_response_prepare.append(security.add_headers)
    app[SERVICE] = service
    app[PAGES] = pages or PageSettings()
    if service is not None:  # None: only the routes are wanted
        app[EXPOSITION] = Exposition(service.metrics.registry,
                                     on_age_lag=service.metrics.exposition_age_lag.set)
        app[INDEX] = AccountIndex(service.fleet, service.freshness,
                                  down_sources=lambda: [(s.kind, s.name) for s in
                                                        service.source_statuses() if s.up is False])
        app.cleanup_ctx.append(_refresh_exposition)
        app.cleanup_ctx.append(_refresh_index)
    app.router.add_get("/", landing_page)
    app.router.add_get("/accounts/{channel}/{account}", account_page)
    app.router.add_post("/accounts/{channel}/{account}/reconnect-link", create_reconnect_link)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/accounts", api.accounts)
    app.router.add_post("/api/v1/recheck", recheck)
    app.router.add_post("/api/v1/freshness", freshness)
    app.router.add_post("/api/v1/freshness/batch", freshness_batch)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    # the account holder's browser has no agent credentials: the link's state is one
    app.router.add_get(CALLBACK_PATH, self_authenticating(callback_handler(service)))
    return app


async def _refresh_exposition(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[EXPOSITION].keep_fresh(), name="exposition refresh")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _refresh_index(app: web.Application) -> AsyncIterator[None]:
    """Fold check results into the account index as they come, so a page finds little to do;
    a full rebuild (a new fleet) goes in steps with the loop served in between."""
    async def keep_fresh() -> None:
        index = app[INDEX]
        while True:
            await asyncio.sleep(INDEX_REFRESH)
            try:
                while index.step():
                    await asyncio.sleep(0)
            except Exception:  # the pages refresh it too, and say what fails
                log.exception("updating the account index failed")

    task = asyncio.create_task(keep_fresh(), name="account index refresh")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def metrics(request: web.Request) -> web.StreamResponse:
    """The exposition, from cached per-account text, in the format the scraper asks for
    (OpenMetrics or the text format); gzip when it accepts it. Written piece by piece,
    ``WRITE_SIZE`` at a time with the loop served in between: neither the gzip member
    (10 MB at 50,000 accounts) nor the plain text (100 MB) is ever joined whole."""
    exposition = request.app[EXPOSITION]
    await exposition.settled()
    fmt = negotiate(request.headers.get("Accept"))
    headers = {"Content-Type": fmt.content_type, "Vary": "Accept, Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        headers["Content-Encoding"] = "gzip"
        size, parts = exposition.render_gzip_parts(fmt)
    else:
        size, parts = exposition.render_parts(fmt)
    response = web.StreamResponse(headers=headers)
    response.content_length = size
    await response.prepare(request)
    try:
        if request.method != "HEAD":  # a HEAD gets the length, not the body
            for chunk in batched_bytes(parts, WRITE_SIZE):
                await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        # the scraper went away mid-body (its scrape timeout, most often): nothing is wrong
        # here, and Prometheus counts the failed scrape itself (up, scrape_duration_seconds)
        log.debug("/metrics: %s closed the connection before the body was sent",
                  request.remote)
    return response


def batched_bytes(parts: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``parts`` joined into pieces of about ``size`` bytes (a write per small part would be
    a system call each; one join of all would copy the whole body)."""
    batch: list[bytes] = []
    held = 0
    for part in parts:
        batch.append(part)
        held += len(part)
        if held >= size:
            yield b"".join(batch)
            batch, held = [], 0
    if held:
        yield b"".join(batch)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip``, ``*``, without ``q=0``)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[SERVICE].ready:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def recheck(request: web.Request) -> web.Response:
    """Check one account now: ``{"channel": "amazon_ads", "account": "acme-us"}``."""
    service = request.app[SERVICE]
    body = await _json_body(request)
    for field in ("channel", "account"):
        if not isinstance(body.get(field), str):
            raise _bad_request(f"field '{field}' is required and must be a string", field)
    account = service.find_account(body["channel"], body["account"])
    if account is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": service.not_here(body["channel"], body["account"]),
                             "field": "account"}),
            content_type="application/json",
        )
    channel = service.config.channels[account.channel]
    datasets = service.freshness.account_datasets(account.key)
    before = account_status(service.fleet.states[account.key], channel, datasets, account)
    state = await service.scheduler.check_now(account)
    return web.json_response({"before": before,
                              "after": account_status(state, channel, datasets, account)})


async def freshness(request: web.Request) -> web.Response:
    """A heartbeat: ``{"channel": "amazon_ads", "account": "acme-us", "dataset":
    "sp_campaigns_daily", "last_updated": "2026-11-27T04:00:00Z"}`` -> 204; a refused one
    gets a 4xx JSON error naming the field, and nothing is stored."""
    body = await _json_body(request)
    service = request.app[SERVICE]
    try:
        service.freshness.heartbeat(body)
    except HeartbeatRejected as exc:
        # a refusal quotes what was sent; mask it like anything else that leaves the process
        return web.json_response({"error": redact(exc.message),
                                  "field": exc.field and redact(exc.field)}, status=exc.status)
    try:
        await service.store.durable()  # answered once on disk
    except StateWriteError:
        return _not_stored()
    return web.Response(status=204)


async def freshness_batch(request: web.Request) -> web.Response:
    """Many heartbeats: ``{"heartbeats": [{...}, ...]}``, each item as for
    ``POST /api/v1/freshness``. Each is validated and stored on its own (one refused item
    stores nothing of itself and does not stop the others): 200 when every one was stored,
    else 422 with the refused ones by index, each with its status, error and field."""
    body = await _json_body(request, MAX_BATCH_BODY)
    unknown = [name for name in body if name != "heartbeats"]
    if unknown:  # the name quotes what was sent: masked like anything leaving the process
        raise _bad_request(redact(f"unknown field '{unknown[0]}' (expected heartbeats)"),
                           redact(unknown[0]))
    items = body.get("heartbeats")
    if not isinstance(items, list) or not items:
        raise _bad_request("field 'heartbeats' is required and must be a non-empty array of "
                           "heartbeat objects", "heartbeats")
    if len(items) > MAX_BATCH:
        raise _bad_request(f"field 'heartbeats' has {len(items)} items; at most {MAX_BATCH} "
                           f"per request", "heartbeats")
    service = request.app[SERVICE]
    refused = service.freshness.heartbeats(items)
    try:
        await service.store.durable()  # answered once on disk
    except StateWriteError:
        return _not_stored()
    return web.json_response(
        {"accepted": len(items) - len(refused),
         "refused": [{"index": i, "status": exc.status, "error": redact(exc.message),
                      "field": exc.field and redact(exc.field)} for i, exc in refused]},
        status=422 if refused else 200)


def _not_stored() -> web.Response:
    """503 for heartbeats whose commit failed: they are kept and retried, but not stored yet;
    posting them again is safe (and answered once they are on disk)."""
    return web.json_response(
        {"error": "the heartbeats were not stored yet: the agent could not write its state "
                  "file (it retries; post them again)", "field": None}, status=503)


async def reload(request: web.Request) -> web.Response:
    """Re-read the configuration file, as SIGHUP does; 500 with every problem when it is bad."""
    outcome = await request.app[SERVICE].reload()
    if not outcome.ok:
        return web.json_response(
            {"status": "error", "error": "the configuration was not reloaded; the previous one "
                                         "stays in force", "problems": outcome.problems},
            status=500,
        )
    return web.json_response({"status": "success", "added": outcome.added,
                              "removed": outcome.removed, "changed": outcome.changed,
                              "warnings": outcome.warnings})


async def _json_body(request: web.Request, limit: int = MAX_BODY) -> dict[str, Any]:
    too_large = web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=request.content_length or limit + 1,
        text=json.dumps({"error": f"body is larger than {limit} bytes", "field": None}),
        content_type="application/json")
    if (request.content_length or 0) > limit:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    if len(raw) > limit:
        raise too_large
    try:
        body = json.loads(raw)  # bytes: UTF-8/16/32 detected, whatever the header claims
    except (ValueError, RecursionError):
        raise _bad_request("body must be a JSON object", None) from None
    if not isinstance(body, dict):
        raise _bad_request("body must be a JSON object", None)
    return body


def _bad_request(message: str, field: str | None) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": message, "field": field}), content_type="application/json"
    )


def split_listen_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[::1]:port`` or ``:port`` (all interfaces) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)

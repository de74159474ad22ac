"""The HTTP server: /metrics, the landing page, the status API, the health endpoints and the
redirect of reconnect links (``agent.web.oauth_callback``)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from agent.freshness.heartbeat import HeartbeatRejected
from agent.metrics.exposition import Exposition
from agent.metrics.formats import negotiate
from agent.reconnect import CALLBACK_PATH
from agent.redact import redact
from agent.service import AgentService, account_status
from agent.web.auth import WebSecurity, self_authenticating
from agent.web.oauth_callback import callback_handler

SERVICE = web.AppKey("service", AgentService)
EXPOSITION = web.AppKey("exposition", Exposition)
MAX_BODY = 64 * 1024  # request bodies past this get 413


def make_app(service: AgentService, security: WebSecurity | None = None) -> web.Application:
    """The agent's HTTP API. Without ``security`` (no web config) nothing is protected."""
    security = security or WebSecurity(None)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[security.middleware])
    app.on_response_prepare.append(security.add_headers)
    app[SERVICE] = service
    if service is not None:  # None: only the routes are wanted
        app[EXPOSITION] = Exposition(service.metrics.registry)
        app.cleanup_ctx.append(_refresh_exposition)
    app.router.add_get("/", landing_page)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/api/v1/recheck", recheck)
    app.router.add_post("/api/v1/freshness", freshness)
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


async def metrics(request: web.Request) -> web.Response:
    """The exposition, from cached per-account text, in the format the scraper asks for
    (OpenMetrics or the text format); gzip when it accepts it."""
    exposition = request.app[EXPOSITION]
    fmt = negotiate(request.headers.get("Accept"))
    headers = {"Content-Type": fmt.content_type, "Vary": "Accept, Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=exposition.render_gzip(fmt), headers=headers)
    return web.Response(body=exposition.render(fmt), headers=headers)


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


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].status())


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
    before = account_status(service.fleet.states[account.key], channel, datasets, account.labels)
    state = await service.scheduler.check_now(account)
    return web.json_response({"before": before,
                              "after": account_status(state, channel, datasets, account.labels)})


async def freshness(request: web.Request) -> web.Response:
    """A heartbeat: ``{"channel": "amazon_ads", "account": "acme-us", "dataset":
    "sp_campaigns_daily", "last_updated": "2026-11-27T04:00:00Z"}`` -> 204; a refused one
    gets a 4xx JSON error naming the field, and nothing is stored."""
    body = await _json_body(request)
    try:
        request.app[SERVICE].freshness.heartbeat(body)
    except HeartbeatRejected as exc:
        # a refusal quotes what was sent; mask it like anything else that leaves the process
        return web.json_response({"error": redact(exc.message), "field": exc.field},
                                 status=exc.status)
    return web.Response(status=204)


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


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY, actual_size=request.content_length or MAX_BODY + 1,
            text=json.dumps({"error": f"body is larger than {MAX_BODY} bytes", "field": None}),
            content_type="application/json") from None
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


_STATE_COLOURS = {"valid": "#2e7d32", "invalid": "#c62828", "unverified": "#ef6c00",
                  "pending": "#757575", "fresh": "#2e7d32", "stale": "#c62828",
                  "no data yet": "#757575"}


def _datasets_cell(datasets: list[dict[str, Any]]) -> str:
    """One line per data set: name, state, age and threshold (and a failing source)."""
    lines = []
    for d in datasets:
        age = f"{d['age']} old, " if d["age"] is not None else ""
        down = " · source down" if d["source_up"] is False else ""
        lines.append(
            f'{html.escape(d["dataset"])}: <b style="color:{_STATE_COLOURS[d["state"]]}">'
            f'{d["state"]}</b> ({html.escape(age)}max {html.escape(d["max_age"])}){down}')
    return "<br>".join(lines)


async def landing_page(request: web.Request) -> web.Response:
    doc = request.app[SERVICE].status()
    rows = []
    for a in doc["accounts"]:
        colour = _STATE_COLOURS[a["state"]]
        cells = [
            a["channel"], a["account"], a["region"], a["source"],
            f'<b style="color:{colour}">{a["state"]}</b>',
            a["reason"] or "", a["detail"] or "", a["last_check"] or "never",
            a["last_valid"] or "never",
            a["refresh_token_expiry"] or ("n/a: reconnect" if a["valid"] is False else ""),
        ]
        rows.append("<tr>" + "".join(
            f"<td>{c if i == 4 else html.escape(str(c))}</td>" for i, c in enumerate(cells)
        ) + f"<td>{_datasets_cell(a['datasets'])}</td></tr>")
    errors = "".join(
        f"<li>{html.escape(e['plugin'])}: {html.escape(e['error'])}</li>"
        for e in doc["plugins"]["errors"]
    )
    page = _PAGE.format(
        version=html.escape(doc["agent"]["version"]),
        merchants=_merchants_table(doc["accounts"]),
        rows="\n".join(rows),
        errors=f"<h2>Plugin errors</h2><ul>{errors}</ul>" if errors else "",
    )
    return web.Response(text=page, content_type="text/html")


MERCHANT_LABEL = "merchant"


def _merchants_table(accounts: list[dict[str, Any]]) -> str:
    """One row per merchant (the account's ``merchant`` label, else its name), one column per
    channel: a merchant's Amazon Ads and SP-API connections side by side. Empty with one
    channel."""
    channels = sorted({a["channel"] for a in accounts})
    if len(channels) < 2:
        return ""
    by_merchant: dict[str, dict[str, dict[str, Any]]] = {}
    for a in accounts:
        merchant = a["labels"].get(MERCHANT_LABEL) or a["account"]
        by_merchant.setdefault(merchant, {})[a["channel"]] = a
    rows = []
    for merchant, connections in sorted(by_merchant.items()):
        cells = [f"<td>{html.escape(merchant)}</td>"]
        for channel in channels:
            a = connections.get(channel)
            if a is None:
                cells.append("<td></td>")
                continue
            reason = f" ({html.escape(a['reason'])})" if a["reason"] else ""
            cells.append(f'<td><b style="color:{_STATE_COLOURS[a["state"]]}">{a["state"]}</b>'
                         f"{reason}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in channels)
    return (f"<h2>By merchant</h2><table><tr><th>Merchant</th>{head}</tr>"
            + "\n".join(rows) + "</table><h2>Accounts</h2>")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Channel Health Agent</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head>
<body><h1>Channel Health Agent</h1>
<p>Version {version}. <a href="/metrics">Metrics</a> · <a href="/api/v1/status">Status (JSON)</a>
 · <a href="/-/healthy">Healthy</a> · <a href="/-/ready">Ready</a></p>
{errors}
{merchants}
<table><tr><th>Channel</th><th>Account</th><th>Region</th><th>Source</th><th>State</th>
<th>Reason</th>
<th>Detail</th><th>Last check</th><th>Last valid</th><th>Refresh token expiry</th>
<th>Data sets</th></tr>
{rows}
</table></body></html>
"""


def split_listen_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[::1]:port`` or ``:port`` (all interfaces) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)

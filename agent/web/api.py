"""``GET /api/v1/status`` and ``GET /api/v1/accounts``: the summary and one page of accounts,
filtered and paged as the landing page is (agent.web.query)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from agent.freshness.timestamps import iso
from agent.redact import redact
from agent.service import AgentService
from agent.web.appkeys import INDEX, SERVICE
from agent.web.fleet_index import STATES, AccountIndex, Page
from agent.web.query import ListQuery, QueryError, encode_cursor, parse_query


def summary(service: AgentService, index: AccountIndex) -> dict[str, Any]:
    """Counts by state per channel, stale data, sources up or down, the last check cycle."""
    index.refresh()
    channels = {}
    for name in dict.fromkeys([*service.config.channels, *(c for c, _ in index.counts)]):
        counts = {word: index.counts[(name, word)] for word in STATES}
        channels[name] = {**counts, "total": sum(counts.values())}
    by_state = {word: sum(counts[word] for counts in channels.values()) for word in STATES}
    sources = service.source_statuses()
    return {
        "accounts": sum(by_state.values()),
        "by_state": by_state,
        "by_channel": channels,
        "stale_datasets": index.stale_datasets,
        "accounts_with_stale_data": index.stale_accounts(),
        "sources": [source.as_dict() for source in sources],
        "sources_down": [source.as_dict() for source in sources if source.up is False],
        "last_cycle_finished": iso(index.last_cycle_finished),
    }


def page_of(index: AccountIndex, query: ListQuery) -> Page:
    return index.page(query.filters, query.limit, query.after, query.before)


def accounts_doc(service: AgentService, page: Page, query: ListQuery) -> dict[str, Any]:
    return {
        "accounts": [service.account_doc(key) for key in page.keys],
        "total": page.total,
        "limit": query.limit,
        "next_cursor": encode_cursor(page.next) if page.next else None,
        "prev_cursor": encode_cursor(page.prev) if page.prev else None,
    }


def query_or_400(request: web.Request) -> ListQuery:
    try:
        return parse_query(request.query)
    except QueryError as exc:  # quotes what was sent: masked like anything else that leaves
        raise web.HTTPBadRequest(text=_json_error(redact(str(exc)), exc.param),
                                 content_type="application/json") from None


async def status(request: web.Request) -> web.Response:
    """The agent, plugins, channels, sources, the summary and one page of accounts."""
    service, index = request.app[SERVICE], request.app[INDEX]
    query = query_or_400(request)
    page = page_of(index, query)
    return web.json_response({**service.status_header(), "summary": summary(service, index),
                              **accounts_doc(service, page, query)})


async def accounts(request: web.Request) -> web.Response:
    """The summary and one page of accounts."""
    service, index = request.app[SERVICE], request.app[INDEX]
    query = query_or_400(request)
    page = page_of(index, query)
    return web.json_response({"summary": summary(service, index),
                              **accounts_doc(service, page, query)})


def _json_error(message: str, field: str) -> str:
    return json.dumps({"error": message, "field": field})

"""The landing page ``/``: the summary, the filters and one page of accounts, the longest-broken
first. Every count links to the list it counts; every URL can be pasted into a ticket."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from agent.redact import redact
from agent.service import AgentService
from agent.storage.state import AccountState, state_word
from agent.web.api import page_of, summary
from agent.web.appkeys import INDEX, SERVICE
from agent.web.fleet_index import STATES, AccountIndex, Filters, Page, broken_since
from agent.web.html_layout import LABELS, badge, error_page, esc, page, when
from agent.web.query import ListQuery, QueryError, list_url, parse_query

_COLUMNS = ("invalid", "unverified", "pending", "valid")
MERCHANT_LABEL = "merchant"  # the label that ties one merchant's accounts of several channels
_HOT = {"invalid": "hot", "unverified": "warm"}


async def landing_page(request: web.Request) -> web.Response:
    service, index = request.app[SERVICE], request.app[INDEX]
    try:
        # the form and the links show the query again: masked like anything that leaves
        query = parse_query({name: redact(value) for name, value in request.query.items()})
    except QueryError as exc:
        return error_page(400, "This list cannot be shown", str(exc))
    now = time.time()
    listed = page_of(index, query)
    doc = summary(service, index)
    header = service.status_header()
    body = "\n".join([
        _banners(header),
        _summary(doc, index.last_cycle_finished, now),
        _filter_form(query.filters, service, index.reasons()),
        _account_table(service, listed, query, bool(index.labels()), now),
        _merchants(service, index, listed.keys),
    ])
    subtitle = (f"version {header['agent']['version']} · shard {header['agent']['shard']} · "
                f"{doc['accounts']:,} accounts")
    return page("Accounts", body, subtitle=subtitle)


def _banners(header: dict[str, Any]) -> str:
    out = []
    for name, channel in header["channels"].items():
        if channel["client_valid"] is False:
            out.append(f'<div class="banner"><b>{esc(name)}: the application\'s client id/secret '
                       f'is rejected</b> — every account of this channel fails until it is '
                       f'fixed. Runbook: ChannelClientCredentialInvalid.</div>')
    for error in header["plugins"]["errors"]:
        out.append(f'<div class="banner">Plugin {esc(error["plugin"])} failed to load: '
                   f'{esc(error["error"])}</div>')
    return "\n".join(out)


def _summary(doc: dict[str, Any], last_cycle: float | None, now: float) -> str:
    rows = []
    channels = doc["by_channel"]
    totals = {None: {**doc["by_state"], "total": doc["accounts"]}} if len(channels) > 1 else {}
    for channel, counts in {**channels, **totals}.items():
        label = esc(channel) if channel else "<b>all channels</b>"
        cells = "".join(_count_cell(counts[word], Filters(channel=channel, state=word), word)
                        for word in _COLUMNS)
        total = f'<a href="{esc(list_url(Filters(channel=channel)))}">{counts["total"]:,}</a>'
        rows.append(f"<tr><td>{label}</td>{cells}<td class=\"num\">{total}</td></tr>")
    heads = "".join(f'<th class="num">{esc(LABELS.get(w, w))}</th>' for w in _COLUMNS)
    table = (f'<table class="counts"><tr><th>Channel</th>{heads}<th class="num">Total</th></tr>'
             f'{"".join(rows)}</table>')
    stale = doc["stale_datasets"]
    down = doc["sources_down"]
    down_text = (", ".join(f'{esc(s["name"])} <span class="sub">({esc(s["kind"])}, '
                           f'{esc(s["type"])})</span>' for s in down) if down else "none")
    cards = [
        _card(f'<a href="{esc(list_url(Filters(stale=True)))}">{stale:,}</a>',
              "stale data sets", f'on {doc["accounts_with_stale_data"]:,} account(s)',
              alert=stale > 0),
        _card(f'<a href="{esc(list_url(Filters(source_down=True)))}">{len(down)}</a>',
              "sources down",
              f'{down_text} <span class="sub">of {len(doc["sources"])}</span>', alert=bool(down)),
        _card(when(last_cycle, now, never="not yet"), "last check cycle finished",
              "every account checked once since the previous cycle"),
    ]
    return f'<h2>Summary</h2>{table}<div class="cards">{"".join(cards)}</div>'


def _count_cell(count: int, filters: Filters, word: str) -> str:
    css = "zero" if count == 0 else _HOT.get(word, "")
    return (f'<td class="num {css}"><a href="{esc(list_url(filters))}" '
            f'title="{esc(LABELS.get(word, word))}">{count:,}</a></td>')


def _card(number: str, title: str, sub: str, *, alert: bool = False) -> str:
    return (f'<div class="card{" alert" if alert else ""}"><span class="n">{number}</span>'
            f'{esc(title)}<div class="sub">{sub}</div></div>')


def _filter_form(filters: Filters, service: AgentService, reasons: list[str]) -> str:
    def select(name: str, current: str | None, options: list[tuple[str, str]]) -> str:
        items = "".join(
            f'<option value="{esc(value)}"{" selected" if value == (current or "") else ""}>'
            f'{esc(text)}</option>' for value, text in [("", "any"), *options])
        return f'<select name="{name}" id="f-{name}">{items}</select>'

    channels = [(name, name) for name in service.config.channels]
    states = [(word, LABELS.get(word, word)) for word in STATES]
    reason_options = [(r, r) for r in sorted({*reasons, *([filters.reason] if filters.reason
                                                          else [])})]
    stale = None if filters.stale is None else "yes" if filters.stale else "no"
    label = "=".join(filters.label) if filters.label else ""
    return f"""<form class="filters" method="get" action="/">
<label>Channel {select("channel", filters.channel, channels)}</label>
<label>State {select("state", filters.state, states)}</label>
<label>Reason {select("reason", filters.reason, reason_options)}</label>
<label>Stale data {select("stale", stale, [("yes", "stale"), ("no", "not stale")])}</label>
<label>Sources {select("source_down", "yes" if filters.source_down else None,
                       [("yes", "a source is down")])}</label>
<label>Label <input name="label" value="{esc(label)}" placeholder="merchant=acme" size="16">
</label>
<label>Account name <input name="q" value="{esc(filters.name)}" placeholder="part of the name"
 size="18"></label>
<button type="submit">Filter</button> <a href="/">Clear</a>
</form>"""


def _account_table(service: AgentService, listed: Page, query: ListQuery, labelled: bool,
                   now: float) -> str:
    """The accounts of this page; a Labels column when some account of the fleet has one."""
    rows = [_account_row(service.account_doc(key), service.fleet.states[key], labelled, now)
            for key in listed.keys]
    total = "" if listed.total is None else f" of {listed.total:,}"
    shown = f"{len(rows):,}{total} account(s)" if rows else "No account matches."
    pager = _pager(listed, query)
    table = ("<table class=\"accounts\" id=\"accounts\"><tr><th>Account</th><th>Channel</th>"
             "<th>Region</th><th>Source</th><th>State</th><th>Reason</th><th>Broken since</th>"
             "<th>Last check</th><th>Data</th>" + ("<th>Labels</th>" if labelled else "")
             + "</tr>" + "".join(rows) + "</table>"
             if rows else "")
    return (f'<p class="muted" id="shown">{shown} · longest broken first</p>{table}{pager}')


def _account_row(a: dict[str, Any], state: AccountState, labelled: bool, now: float) -> str:
    href = account_url(a["channel"], a["account"])
    data = "".join(
        f'<span class="chip" title="age {esc(d["age"] or "-")}, max {esc(d["max_age"])}">'
        f'{esc(d["dataset"])} {badge(d["state"], _data_word(d))}</span>'
        for d in a["datasets"]) or '<span class="muted">—</span>'
    labels = "<td>" + "".join(f'<span class="chip">{esc(k)}={esc(v)}</span>'
                              for k, v in sorted(a["labels"].items())) + "</td>"
    return (f'<tr data-state="{esc(a["state"])}"><td><a href="{esc(href)}">{esc(a["account"])}</a>'
            f'</td><td>{esc(a["channel"])}</td><td>{esc(a["region"])}</td><td>{esc(a["source"])}</td>'
            f'<td>{badge(a["state"])}</td><td>{esc(a["reason"] or "")}</td>'
            f'<td>{when(broken_since(state) or None, now, never="—")}</td>'
            f'<td>{when(state.last_check, now)}</td><td>{data}</td>'
            f'{labels if labelled else ""}</tr>')


def _merchants(service: AgentService, index: AccountIndex, keys: list[tuple[str, str]]) -> str:
    """With several channels: each merchant of this page (the ``merchant`` label, else the
    account's name) with its connections side by side, e.g. advertising revoked while the
    seller authorisation works."""
    channels = list(service.config.channels)
    if len(channels) < 2:
        return ""
    accounts = service.fleet.accounts
    rows: dict[str, str] = {}
    for key in keys:
        merchant = accounts[key].labels.get(MERCHANT_LABEL) or key[1]
        if merchant in rows:
            continue
        same_name = [(c, merchant) for c in channels if (c, merchant) in accounts
                     and accounts[(c, merchant)].labels.get(MERCHANT_LABEL, merchant) == merchant]
        connections = {k[0]: k for k in [*index.labelled(MERCHANT_LABEL, merchant), *same_name]}
        cells = []
        for channel in channels:
            found = connections.get(channel)
            if found is None:
                cells.append("<td></td>")
                continue
            state = service.fleet.states[found]
            reason = f" ({esc(state.reason)})" if state.reason else ""
            cells.append(f'<td><a href="{esc(account_url(*found))}">{badge(state_word(state))}'
                         f'</a>{reason}</td>')
        listed = list_url(Filters(label=(MERCHANT_LABEL, merchant)) if any(
            accounts[k].labels.get(MERCHANT_LABEL) for k in connections.values())
            else Filters(name=merchant))
        rows[merchant] = (f'<tr><td><a href="{esc(listed)}">{esc(merchant)}</a></td>'
                          f'{"".join(cells)}</tr>')
    head = "".join(f"<th>{esc(c)}</th>" for c in channels)
    return (f'<h2>By merchant</h2><table id="merchants"><tr><th>Merchant</th>{head}</tr>'
            f'{"".join(rows.values())}</table><p class="muted small">The merchants of the '
            f'accounts above, each with its connection to every channel.</p>')


def _data_word(dataset: dict[str, Any]) -> str:
    word = dataset["state"]
    if word == "stale":
        word = f"stale {dataset['age']}"
    return word + (" · source down" if dataset["source_up"] is False else "")


def _pager(listed: Page, query: ListQuery) -> str:
    filters, limit = query.filters, query.limit
    links = []
    if listed.prev is not None:
        href = list_url(filters, limit=limit, before=listed.prev)
        links.append(f'<a rel="prev" href="{esc(href)}">← Previous {limit}</a>')
    if query.after is not None or query.before is not None:
        links.append(f'<a href="{esc(list_url(filters, limit=limit))}">First page</a>')
    if listed.next is not None:
        href = list_url(filters, limit=limit, cursor=listed.next)
        links.append(f'<a rel="next" href="{esc(href)}">Next {limit} →</a>')
    return f'<nav class="pager">{"".join(links)}</nav>' if links else ""


def account_url(channel: str, account: str) -> str:
    return f"/accounts/{quote(channel, safe='')}/{quote(account, safe='')}"

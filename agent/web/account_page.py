"""One account's page, ``/accounts/<channel>/<account>``: what is wrong, what to do about it
(runbook, the exact ``channel-agent reconnect`` command, a consent-link button), the last
check, token facts, data sets, labels and the state history from the state file.

``POST /accounts/<channel>/<account>/reconnect-link`` creates a ``reconnect --link`` consent
link. It changes state, so the web security asks it for a credential like every write
endpoint; it also refuses requests sent by another site's page (a browser that holds the
basic-auth credentials would send them along).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from agent.channel import Account, Channel, ReconnectError, Reconnector
from agent.freshness.timestamps import iso
from agent.reasons import APPLICATION, CREDENTIAL, PERMISSION
from agent.reconnect import CALLBACK_PATH, create_link, preflight, redirect_uri_of
from agent.redact import redact
from agent.service import AgentService
from agent.status import refresh_expiry
from agent.storage.state import AccountState, Transition
from agent.web.appkeys import PAGES, SERVICE
from agent.web.html_layout import badge, error_page, esc, page, when
from agent.web.landing import account_url

log = logging.getLogger(__name__)

EXPIRY_HORIZON = 30 * 86400.0  # the warning horizon of ChannelRefreshTokenExpiringSoon


def _find(request: web.Request) -> tuple[AgentService, Account] | web.Response:
    service = request.app[SERVICE]
    channel, name = request.match_info["channel"], request.match_info["account"]
    account = service.find_account(channel, name)
    if account is None:
        return error_page(404, "No such account",  # quotes the request: masked
                          redact(f"{channel}/{name}: {service.not_here(channel, name)}."))
    return service, account


async def account_page(request: web.Request) -> web.Response:
    found = _find(request)
    if isinstance(found, web.Response):
        return found
    service, account = found
    now = time.time()
    doc = service.account_doc(account.key)
    state = service.fleet.states[account.key]
    channel = service.config.channels[account.channel]
    history = service.store.load_transitions(account.key)
    base = request.app[PAGES].runbook_base_url
    since = f" since {when(state.state_since, now)}" if state.state_since else ""
    reason = f'<b>{esc(doc["reason"])}</b>' if doc["reason"] else ""
    body = f"""<p><a href="/">← All accounts</a></p>
<h2 style="font-size:20px">{esc(account.channel)} / {esc(account.name)} {badge(doc["state"])}</h2>
<p>{reason or esc(doc["state"])}{since}. {esc(doc["detail"])}</p>
{_what_to_do(service, channel, account, doc, state, base, now)}
<div class="grid">
{_last_check(doc, state, now)}
{_token_facts(doc, state, refresh_expiry(state, channel), now)}
{_labels(account)}
</div>
{_datasets(doc, now)}
{_history(history, state, now)}"""
    return page(f"{account.channel}/{account.name}", body)


def runbooks(doc: dict[str, Any], state: AccountState, channel: Channel,
             expiry: float | None, now: float) -> list[str]:
    """The runbooks (docs/runbooks/<name>.md) that concern the account now."""
    names = []
    cls = _reason_class(channel, doc["reason"])
    if cls == APPLICATION:
        names.append("ChannelClientCredentialInvalid")
    elif False in state.targets.values():
        names.append("ChannelTargetInaccessible")
    elif doc["state"] == "invalid":
        names.append("ChannelCredentialInvalid")
    elif doc["reason"] == "throttled":
        names.append("ChannelApiThrottled")
    elif doc["state"] == "unverified":
        names.append("ChannelCredentialUnverified")
    if expiry is not None and expiry - now < EXPIRY_HORIZON:
        names.append("ChannelRefreshTokenExpiringSoon")
    if any(d["state"] == "stale" for d in doc["datasets"]):
        names.append("ChannelDataStale")
    if any(d["source_up"] is False for d in doc["datasets"]):
        names.append("ChannelFreshnessSourceDown")
    return names


def _reason_class(channel: Channel, reason: str | None) -> str | None:
    found = channel.reason_table().get(reason or "")
    return found.cls if found is not None else None


def _what_to_do(service: AgentService, channel: Channel, account: Account, doc: dict[str, Any],
                state: AccountState, base: str, now: float) -> str:
    items = []
    for name in runbooks(doc, state, channel, refresh_expiry(state, channel), now):
        items.append(f'<li>Runbook: <a href="{esc(base.rstrip("/"))}/{name}.md" '
                     f'class="runbook">{name}</a></li>')
    cls = _reason_class(channel, doc["reason"])
    if cls == APPLICATION:
        advice = ("The application's client id/secret or its approval is rejected: this "
                  "concerns every account of the channel, and reconnecting one account does "
                  "not help.")
    elif doc["state"] == "invalid" and cls == PERMISSION:
        advice = ("The consenting user lost access to what the account needs: grant it again, "
                  "or reconnect with a user who has it.")
    elif doc["state"] == "invalid" and cls == CREDENTIAL:
        advice = "A new consent from the account holder fixes this: reconnect the account."
    elif doc["state"] == "valid":
        advice = "The credential works. To re-authorise anyway (a new consent):"
    else:
        advice = "If the account needs a new consent, reconnect it:"
    # agent.cli imports the web server: import the helper when a page is rendered
    from agent.cli.reconnect_list import reconnect_command

    command = reconnect_command(service.config.source, channel, account)
    where = ("Run on the agent's host (or wherever its configuration and state file are):"
             if channel.reconnector() is not None else
             f"Channel {channel.name} has no reconnect flow; what it says to do:")
    return f"""<div class="box todo" id="todo"><h2>What to do</h2><p>{esc(advice)}</p>
<ul>{"".join(items)}</ul>
<p>{esc(where)}</p>
<pre class="cmd" id="reconnect-command">{esc(command)}</pre>
{_link_button(channel, account)}</div>"""


def _link_button(channel: Channel, account: Account) -> str:
    """The form that asks the agent for a consent link, or why there is none."""
    reason = _no_link(channel, account)
    if reason is not None:
        return f'<p class="muted small">No consent-link button: {esc(reason)}</p>'
    action = f"{account_url(account.channel, account.name)}/reconnect-link"
    return f"""<form method="post" action="{esc(action)}" id="reconnect-link">
<p>Or let the account holder approve it: create a consent link (it works once) and send it to
them; this agent completes the reconnect at {esc(CALLBACK_PATH)}.
<button type="submit">Create a reconnect link</button></p></form>"""


def _no_link(channel: Channel, account: Account) -> str | None:
    try:
        preflight(channel, account, link=True)
    except ReconnectError as err:
        return err.message
    uri = redirect_uri_of(channel)
    if urlsplit(uri).path != CALLBACK_PATH:
        return (f"the channel's redirect_uri ({uri}) does not lead to this agent's "
                f"{CALLBACK_PATH}; use the command")
    return None


def _last_check(doc: dict[str, Any], state: AccountState, now: float) -> str:
    result = {True: "conclusive", False: "inconclusive (the credential state is unchanged)",
              None: "no check yet"}[state.check_success]
    return f"""<div class="box"><h2>Last check</h2><dl class="facts">
<dt>When</dt><dd>{when(state.last_check, now)}</dd>
<dt>Result</dt><dd>{badge(doc["state"])} {esc(result)}</dd>
<dt>Reason</dt><dd>{esc(doc["reason"] or "—")}</dd>
<dt>Detail</dt><dd>{esc(doc["detail"] or "—")}</dd>
<dt>Last valid</dt><dd>{when(state.last_valid, now)}</dd>
<dt>Failed checks</dt><dd>{state.failures_total} since the agent started</dd>
</dl></div>"""


def _token_facts(doc: dict[str, Any], state: AccountState, expiry: float | None,
                 now: float) -> str:
    targets = ", ".join(
        f'{esc(p)} {badge("valid", "reachable") if ok else badge("invalid", "not reachable")}'
        for p, ok in sorted(state.targets.items())) or "—"
    kind = f'{doc["target_kind"] or "target"}s'.capitalize()
    return f"""<div class="box"><h2>Tokens</h2><dl class="facts">
<dt>Refresh token</dt><dd>fingerprint <code>{esc(doc["refresh_token_fingerprint"] or "—")}</code>
</dd><dt>Issued</dt><dd>{when(state.refresh_issued, now, never="unknown")}</dd>
<dt>Expires</dt><dd>{when(expiry, now, never=_no_expiry(state))}</dd>
<dt>Access token expires</dt><dd>{when(state.access_expires, now, never="—")}</dd>
<dt>Reconnected</dt><dd>{when(state.reconnected, now)}</dd>
<dt>{esc(kind)}</dt><dd>{targets}</dd>
</dl></div>"""


def _no_expiry(state: AccountState) -> str:
    return "n/a: reconnect" if state.rejected else "unknown or no fixed lifetime"


def _datasets(doc: dict[str, Any], now: float) -> str:
    if not doc["datasets"]:
        return '<h2>Data sets</h2><p class="muted">No data set is configured for this account.</p>'
    rows = "".join(
        f'<tr><td>{esc(d["dataset"])}</td><td>{badge(d["state"])}</td>'
        f'<td>{esc(d["age"] or "—")}</td><td>{esc(d["max_age"])}</td>'
        f'<td>{esc(d["last_updated"] or "—")}</td><td>{esc(d["source"])} '
        f'{badge("invalid", "down") if d["source_up"] is False else ""}'
        f'</td></tr>' for d in doc["datasets"])
    return (f'<h2>Data sets</h2><table id="datasets"><tr><th>Data set</th><th>State</th>'
            f'<th>Age</th><th>Max age</th><th>Newest data</th><th>Source</th></tr>{rows}'
            f'</table>')


def _labels(account: Account) -> str:
    labels = "".join(f'<span class="chip">{esc(k)}={esc(v)}</span>'
                     for k, v in sorted(account.labels.items())) or "none"
    return f"""<div class="box"><h2>Labels and source</h2><dl class="facts">
<dt>Region</dt><dd>{esc(account.region)}</dd><dt>Labels</dt><dd>{labels}</dd>
<dt>Source</dt><dd>{esc(account.source)}</dd></dl></div>"""


def _history(history: list[Transition], state: AccountState, now: float) -> str:
    events: list[tuple[float, str]] = [
        (t.time, f'<td class="nowrap">{badge(t.from_state)} → {badge(t.to_state)}</td>'
                 f'<td>{esc(t.reason or "")}</td><td>{esc(t.detail)}</td>') for t in history]
    if state.reconnected is not None and (not history or state.reconnected >= history[-1].time):
        events.append((state.reconnected, '<td><span class="badge ok">reconnected</span></td>'
                                          '<td></td><td>a new refresh token was stored</td>'))
    events.sort(key=lambda event: event[0], reverse=True)
    rows = "".join(f'<tr><td class="nowrap">{when(moment, now)}<div class="small muted">'
                   f'{esc(iso(moment))}'
                   f'</div></td>{cells}</tr>' for moment, cells in events)
    if not rows:
        return '<h2>State history</h2><p class="muted">No change of state recorded yet.</p>'
    return (f'<h2>State history</h2><table id="history"><tr><th>When</th><th>Change</th>'
            f'<th>Reason</th><th>Detail</th></tr>{rows}</table>')


async def create_reconnect_link(request: web.Request) -> web.Response:
    if _cross_site(request):
        return error_page(403, "Refused", "This request comes from another site's page.")
    found = _find(request)
    if isinstance(found, web.Response):
        return found
    service, account = found
    channel = service.config.channels[account.channel]
    problem = _no_link(channel, account)
    if problem is not None:
        return error_page(409, "No consent link for this account", problem)
    reconnector = channel.reconnector()
    assert isinstance(reconnector, Reconnector)
    link, replaced = create_link(service.store, channel, account, reconnector,
                                 redirect_uri_of(channel))
    log.info("%s/%s: reconnect link created from the web page (expires %s)", account.channel,
             account.name, iso(link.expires))
    again = f" It replaces the account's previous open link ({replaced})." if replaced else ""
    body = f"""<p><a href="{esc(account_url(account.channel, account.name))}">← Back to
{esc(account.channel)} / {esc(account.name)}</a></p>
<h2>Reconnect link for {esc(account.name)}</h2>
<p>Send this link to the person who can approve access for {esc(account.name)}. It works once,
until {esc(iso(link.expires))}.{esc(again)} When they approve, this agent completes the reconnect
and shows them the result; the account page then shows the new state.</p>
<pre class="cmd" id="consent-url">{esc(link.consent_url)}</pre>
<p class="muted small">Follow it with <code>channel-agent reconnect --pending</code>; withdraw it
with <code>channel-agent reconnect {esc(quote(account.channel))} --account
{esc(account.name)} --cancel</code>.</p>"""
    return page("Reconnect link", body, status=201)


def _cross_site(request: web.Request) -> bool:
    """A form posted by another site: its Origin (or Sec-Fetch-Site) says so."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and urlsplit(origin).netloc != request.host

"""channel-agent status: ask a running agent what it knows."""

from __future__ import annotations

from typing import Any

import click
import httpx

from agent.cli.common import (
    agent_error,
    agent_url_option,
    json_option,
    print_datasets,
    print_json,
    print_table,
)
from agent.state_words import STATES

PAGE_SIZE = 1000  # accounts per request (the API's largest page)



@click.command()
@agent_url_option
@click.option("--channel", metavar="NAME", help="Only this channel's accounts.")
@click.option("--state", type=click.Choice(STATES),
              help="Only accounts in this state (pending: never checked).")
@click.option("--reason", metavar="REASON", help="Only accounts failing for this reason.")
@click.option("--stale", type=click.Choice(("yes", "no")),
              help="Only accounts with (yes) or without (no) a stale data set.")
@click.option("--label", metavar="NAME=VALUE", help="Only accounts with this label.")
@click.option("--source-down", is_flag=True,
              help="Only accounts fed by an inventory source, or with a data set whose "
                   "freshness source, that is down now.")
@click.option("--name", metavar="TEXT", help="Only accounts whose name contains TEXT.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Show at most this many accounts (default: every matching one).")
@json_option
def status(url: str, channel: str | None, state: str | None, reason: str | None,
           stale: str | None, label: str | None, source_down: bool, name: str | None,
           limit: int | None,
           as_json: bool) -> None:
    """Show the summary and the accounts, the longest-broken first, with the age of their data
    sets, as the running agent last saw them (GET /api/v1/status, then /api/v1/accounts page
    by page).

    An agent with basic auth takes the credentials in the URL; one with TLS signed by a
    private CA needs SSL_CERT_FILE=ca.crt.

    \b
    Example:
      channel-agent status --url http://127.0.0.1:9877
      channel-agent status --state invalid --channel amazon_ads
      CHANNEL_AGENT_URL=https://sre:PASSWORD@agent.example:9877 channel-agent status
    """
    params = {key: value for key, value in (("channel", channel), ("state", state),
                                            ("reason", reason), ("stale", stale),
                                            ("label", label), ("q", name),
                                            ("source_down", "yes" if source_down else None))
              if value}
    base = url.rstrip("/")
    doc = _get(f"{base}/api/v1/status", {**params, "limit": _page(limit, 0)}, url)
    accounts = doc["accounts"]
    cursor = doc["next_cursor"]
    while cursor is not None and (limit is None or len(accounts) < limit):
        more = _get(f"{base}/api/v1/accounts",
                    {**params, "limit": _page(limit, len(accounts)), "cursor": cursor}, url)
        accounts += more["accounts"]
        cursor = more["next_cursor"]
    doc.update(accounts=accounts, next_cursor=cursor, prev_cursor=None)
    if as_json:
        print_json(doc)
        return
    click.echo(_summary_line(doc["summary"]))
    print_table(
        ("CHANNEL", "ACCOUNT", "REGION", "STATE", "REASON", "BROKEN SINCE", "LAST CHECK",
         "LAST VALID"),
        [(a["channel"], a["account"], a["region"], a["state"], a["reason"], a["broken_since"],
          a["last_check"], a["last_valid"]) for a in accounts],
    )
    if cursor is not None:
        click.echo(f"(more accounts match; --limit {limit} stopped the list)")
    print_datasets(accounts)
    for error in doc["plugins"]["errors"]:
        click.echo(f"plugin error: {error['plugin']}: {error['error']}", err=True)


def _page(limit: int | None, shown: int) -> int:
    return PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - shown)


def _get(address: str, params: dict[str, Any], url: str) -> dict[str, Any]:
    try:
        response = httpx.get(address, params=params, timeout=30)
        if response.status_code == 400:  # a filter the agent refused: its message says which
            agent_error(f"error: {response.json().get('error')}", url)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        agent_error(f"error: could not read the status of the agent at {url}: {exc}", url)


def _summary_line(summary: dict[str, Any]) -> str:
    states = summary["by_state"]
    down = ", ".join(s["name"] for s in summary["sources_down"]) or "none"
    return (f"{summary['accounts']} account(s): {states['invalid']} invalid, "
            f"{states['unverified']} unverified, {states['pending']} never checked, "
            f"{states['valid']} valid; {summary['stale_datasets']} stale data set(s); "
            f"sources down: {down}; last check cycle finished: "
            f"{summary['last_cycle_finished'] or 'not yet'}\n")

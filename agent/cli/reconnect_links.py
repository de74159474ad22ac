"""channel-agent reconnect --link, --pending and --cancel: consent links, which the running
agent completes (``agent.web.oauth_callback``) when the account holder approves."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import click

from agent.channel import Account, ReconnectError, Reconnector
from agent.cli.common import (
    EXIT_CONFIG_ERROR,
    command_name,
    print_json,
    print_table,
    without_password,
)
from agent.cli.reconnect_agent import agent_base_url, agent_ready
from agent.cli.reconnect_list import open_store
from agent.cli.reconnect_report import ReconnectReport, note
from agent.config.loader import Config
from agent.freshness.timestamps import iso
from agent.reconnect import CALLBACK_PATH, create_link
from agent.reconnect_redirect import is_loopback
from agent.storage.state import StateStore


def make_link(report: ReconnectReport, store: StateStore | None, reconnector: Reconnector,
               redirect_uri: str, accept_missing_targets: bool, agent_url: str | None) -> None:
    """--link: record a consent link the running agent completes, and print it."""
    assert store is not None
    if urlsplit(redirect_uri).path != CALLBACK_PATH:
        report.fail(ReconnectError(
            "unsupported", f"a link needs a redirect_uri that reaches the running agent's "
                           f"{CALLBACK_PATH}, like https://agent.example.com{CALLBACK_PATH}, "
                           f"not {redirect_uri}: set channels.{report.channel.name}.redirect_uri "
                           f"or pass --redirect-uri"), EXIT_CONFIG_ERROR)
    url = agent_base_url(report.config, agent_url)
    shown = without_password(url, url)  # basic-auth credentials may be in it
    if is_loopback(redirect_uri) and urlsplit(redirect_uri).port != urlsplit(url).port:
        report.fail(ReconnectError(
            "unsupported", f"a link needs a redirect_uri that reaches the running agent's "
                           f"{CALLBACK_PATH}; {redirect_uri} is a loopback address, and not the "
                           f"agent's ({shown}): set channels.{report.channel.name}.redirect_uri "
                           f"or pass --redirect-uri"), EXIT_CONFIG_ERROR)
    link, replaced = create_link(store, report.channel, report.account, reconnector,
                                 redirect_uri, accept_missing_targets=accept_missing_targets)
    ready = agent_ready(url)
    expires = iso(link.expires)
    report.doc.update(result="link_created", consent_url=link.consent_url, expires=expires,
                      redirect_uri=redirect_uri, replaced_links=replaced,
                      agent={"url": shown, "ready": ready})
    if report.as_json:
        print_json(report.doc)
        return
    click.echo(link.consent_url)
    note(f"Send the URL above to the person who can approve access for "
          f"{report.account.name}. It works once, until {expires}. When they approve, "
          f"{report.channel.title or report.channel.name} sends their browser to "
          f"{redirect_uri}, where the running agent completes the reconnect and shows them "
          f"the result.")
    if replaced:
        note(f"It replaces the account's previous open link ({replaced}).")
    if is_loopback(redirect_uri):
        note(f"warning: {redirect_uri} is a loopback address: the link only works in a "
              f"browser on this machine")
    if not ready:
        note(f"warning: no ready agent answered at {shown}: the link only works while the agent "
              f"runs")
    note(f"Follow it with: {command_name()} reconnect --pending")


def show_links(config: Config, channel_name: str | None, as_json: bool) -> None:
    """--pending: the consent links and how they ended (a finished one stays a week)."""
    store = open_store(config, required=True)
    assert store is not None
    now = time.time()
    rows = [
        {"channel": link.channel, "account": link.account, "region": link.region,
         "status": link.current_status(now), "created": iso(link.created),
         "expires": iso(link.expires), "finished": iso(link.finished), "detail": link.detail,
         "redirect_uri": link.redirect_uri, "consent_url": link.consent_url}
        for link in store.links() if channel_name is None or link.channel == channel_name
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("No consent links.")
        return
    print_table(("CHANNEL", "ACCOUNT", "STATUS", "CREATED", "EXPIRES", "DETAIL"),
                [(r["channel"], r["account"], r["status"], r["created"], r["expires"],
                  r["detail"]) for r in rows])
    if any(r["status"] == "open" for r in rows):
        click.echo("(--json shows the consent URLs of open links)")


def cancel_link(config: Config, account: Account, as_json: bool) -> None:
    """--cancel: withdraw the account's open link."""
    store = open_store(config, required=True)
    assert store is not None
    count = store.cancel_links(account.channel, account.name, time.time())
    if as_json:
        print_json({"channel": account.channel, "account": account.name, "cancelled": count})
    elif count:
        click.echo(f"Withdrew the open consent link of {account.channel}/{account.name}; "
                   f"using it now shows a 'withdrawn' page and changes nothing.")
    else:
        click.echo(f"{account.channel}/{account.name} has no open consent link.")

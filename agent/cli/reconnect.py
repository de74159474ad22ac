"""channel-agent reconnect: re-authorise an account end to end, safely."""

from __future__ import annotations

import asyncio
import difflib
import os
import sys
import time
from typing import Any

import click

from agent.channel import (
    Account,
    Channel,
    CheckContext,
    ReconnectError,
    Reconnector,
)
from agent.cli.common import (
    EXIT_CONFIG_ERROR,
    config_option,
    json_option,
)
from agent.cli.inventory import with_inventory
from agent.cli.loading import load_or_exit
from agent.cli.reconnect_agent import agent_base_url, http_client, recheck
from agent.cli.reconnect_links import cancel_link, make_link, show_links
from agent.cli.reconnect_list import open_store, show_accounts_to_reconnect, usage_exit
from agent.cli.reconnect_report import ReconnectReport, note
from agent.config.durations import format_duration, parse_duration
from agent.config.loader import Config
from agent.reconnect import (
    STEP_TIMEOUT,
    Outcome,
    TargetsMissing,
    complete,
    new_attempt,
    preflight,
    redirect_uri_of,
)
from agent.reconnect_redirect import (
    LocalCallback,
    can_open_browser,
    code_from_redirect,
    is_loopback,
    open_browser,
    parse_pasted,
    read_pasted,
)
from agent.storage.state import StateStore

EXIT_FAILED = 1


@click.command()
@click.argument("channel_name", metavar="[CHANNEL]", required=False)
@click.option("--account", "account_name", metavar="NAME", help="The account to reconnect.")
@config_option
@click.option("--no-browser", is_flag=True,
              help="Print the consent URL alone on one line, then read the URL the browser was "
                   "sent to (or just the code) from standard input. For SSH sessions and scripts.")
@click.option("--link", is_flag=True,
              help="For when someone else must click Allow: record a consent link (valid for "
                   "the channel's reconnect_link_expiry) and print it; the running agent "
                   "completes the reconnect when it is used.")
@click.option("--redirect-uri", metavar="URL", default=None,
              help="Use this redirect URI instead of the channel's redirect_uri.")
@click.option("--accept-missing-targets", is_flag=True,
              help="Store the new token even when it does not reach every expected target "
                   "(Ads profile, SP-API marketplace...).")
@click.option("--accept-missing-profiles", is_flag=True, hidden=True,
              help="Deprecated name of --accept-missing-targets.")
@click.option("--show-token", is_flag=True,
              help="For a token given in the configuration (environment variable): print the "
                   "new token so you can put it there.")
@click.option("--timeout", metavar="DURATION", default="10m", show_default=True,
              help="How long to wait for the consent (local and --no-browser flows).")
@click.option("--agent-url", metavar="URL", default=lambda: os.environ.get("CHANNEL_AGENT_URL"),
              show_default="$CHANNEL_AGENT_URL or the config's listen_address",
              help="The running agent, told to check the account at once.")
@click.option("--list", "list_accounts", is_flag=True,
              help="List the accounts that need reconnecting, with the command for each.")
@click.option("--within", metavar="DURATION", default="30d", show_default=True,
              help="With --list: include credentials that expire within this time.")
@click.option("--pending", is_flag=True, help="List the consent links made with --link.")
@click.option("--cancel", is_flag=True, help="Withdraw the account's open consent link.")
@json_option
def reconnect(
    channel_name: str | None,
    account_name: str | None,
    config_path: str,
    no_browser: bool,
    link: bool,
    redirect_uri: str | None,
    accept_missing_targets: bool,
    accept_missing_profiles: bool,
    show_token: bool,
    timeout: str,
    agent_url: str | None,
    list_accounts: bool,
    within: str,
    pending: bool,
    cancel: bool,
    as_json: bool,
) -> None:
    """Re-authorise an account and store its new credential, safely.

    \b
    1. Builds the account's consent URL (random state; PKCE S256 where the provider has it).
    2. Gets the authorisation code: by default through a browser and a one-request server
       on the loopback redirect_uri; --no-browser: paste the redirected URL; --link: the
       running agent receives it (at /oauth/callback) when the account holder clicks.
    3. Exchanges the code, then 4. verifies the new credential (the targets it reaches,
       compared with the expected ones) before 5. storing it (atomic write, 0600, the
       previous one kept as a timestamped .bak) and recording the grant in the state file;
       6. asks the running agent to check the account at once (state before and after).
    A declined consent, a wrong state, a reused or expired code, a timeout or a missing
    expected target end with a message and change nothing. Exit status: 0 done, 1 the
    reconnect failed, 2 bad usage or configuration.

    \b
    Example:
      channel-agent reconnect amazon_ads --account acme-us --config config.yaml
      channel-agent reconnect amazon_ads --account acme-us --no-browser
      channel-agent reconnect amazon_ads --account acme-us --link
      channel-agent reconnect --list --json
    """
    listing = [flag for flag, on in (("--list", list_accounts), ("--pending", pending),
                                     ("--cancel", cancel)) if on]
    if len(listing) > 1:
        raise click.UsageError(f"{' and '.join(listing)} cannot be combined")
    if no_browser and link:
        raise click.UsageError("--no-browser and --link cannot be combined")
    wait = _duration("--timeout", timeout)
    if accept_missing_profiles:
        note("--accept-missing-profiles is deprecated: use --accept-missing-targets")
        accept_missing_targets = True
    if (list_accounts or pending) and account_name is not None:
        raise click.UsageError(f"{listing[0]} takes no --account")
    if not (list_accounts or pending) and (channel_name is None or account_name is None):
        raise click.UsageError("give a CHANNEL and --account NAME (or --list, or --pending)")
    config = with_inventory(load_or_exit(config_path)[0])
    if list_accounts or pending:
        if channel_name is not None:
            _channel(config, channel_name)
        if list_accounts:
            show_accounts_to_reconnect(config, config_path, channel_name,
                                       _duration("--within", within), as_json)
        else:
            show_links(config, channel_name, as_json)
        return
    assert channel_name is not None and account_name is not None
    channel = _channel(config, channel_name)
    account = _account(config, channel, account_name)
    if cancel:
        cancel_link(config, account, as_json)
        return
    mode = "link" if link else "no-browser" if no_browser else "local"
    uri = redirect_uri or redirect_uri_of(channel)
    if mode == "local" and not is_loopback(uri):
        note(f"the redirect_uri {uri} is not a loopback address: reading the redirect from "
              f"standard input instead (--no-browser)")
        mode = "no-browser"
    report = ReconnectReport(config, channel, account, mode, as_json)
    try:
        reconnector = preflight(channel, account, link=link, show_token=show_token)
    except ReconnectError as err:
        report.fail(err, EXIT_CONFIG_ERROR)
    store = open_store(config, required=link)
    if link:
        make_link(report, store, reconnector, uri, accept_missing_targets, agent_url)
        return
    try:
        outcome = asyncio.run(_flow(report, reconnector, uri, wait, store,
                                    accept_missing_targets))
    except TargetsMissing as err:
        report.targets(err.result)
        report.fail(err, EXIT_FAILED, hint="to store it anyway, run again with "
                                           "--accept-missing-targets")
    except ReconnectError as err:
        report.fail(err, EXIT_FAILED)
    except KeyboardInterrupt:
        report.fail(ReconnectError("interrupted", "interrupted; a token file is only ever "
                                                  "replaced whole"), EXIT_FAILED)
    report.targets(outcome.result)
    report.stored(outcome, store)
    if outcome.stored_in is not None:
        report.agent(asyncio.run(recheck(agent_base_url(config, agent_url), account, config)))
    report.done(reconnector.after_reconnect_note)


# --- the flow ---------------------------------------------------------------------------


async def _flow(report: ReconnectReport, reconnector: Reconnector, redirect_uri: str, wait: float,
                store: StateStore | None, accept_missing_targets: bool) -> Outcome:
    account = report.account
    attempt = new_attempt(reconnector, account, redirect_uri)
    region = f" (region {account.region})" if account.region else ""
    note(f"Reconnecting {account.channel} account {account.name}{region}.")
    if report.mode == "local":
        server = LocalCallback(redirect_uri, attempt.state, reconnector)
        await server.start()
        try:
            note(f"Open this URL in a browser and sign in as a user who can grant the "
                  f"account's {report.channel.target_kind or 'target'}s:")
            note(f"  {attempt.consent_url}")
            if can_open_browser():
                open_browser(attempt.consent_url)
                note("(opening your browser)")
            else:
                note(f"(no browser here: open it on this machine; if your browser runs "
                      f"elsewhere, it cannot reach {redirect_uri}: use --no-browser)")
            note(f"Waiting up to {format_duration(wait)} for the redirect to {redirect_uri} ...")
            code = await server.wait(wait)
        finally:
            await server.stop()
    else:
        click.echo(attempt.consent_url)  # alone on its line, on stdout: scripts read it
        note(f"Open the URL above in a browser and approve. Then paste here the address the "
              f"browser was sent to (it starts with {redirect_uri}; that page may fail to "
              f"load, which is fine), or just its code:")
        params, with_url = parse_pasted(await read_pasted(sys.stdin, wait))
        code = code_from_redirect(params, attempt.state if with_url else None, reconnector)
    async with http_client() as http:
        ctx = CheckContext(http=http, deadline=time.monotonic() + STEP_TIMEOUT,
                           retry=report.channel.retry_policy())
        return await complete(report.channel, account, code, attempt, ctx, store,
                              accept_missing_targets=accept_missing_targets, progress=note)


# --- helpers ------------------------------------------------------------------------------


def _channel(config: Config, name: str) -> Channel:
    channel = config.channels.get(name)
    if channel is None:
        usage_exit(f"channel '{name}' is not configured in {config.source}"
                    f"{_suggest(name, config.channels)}")
    return channel


def _account(config: Config, channel: Channel, name: str) -> Account:
    """The account of the file or of an inventory source (see with_inventory)."""
    accounts = [a for a in config.accounts() if a.channel == channel.name]
    for account in accounts:
        if account.name == name:
            return account
    usage_exit(f"{channel.name} has no account '{name}'"
                f"{_suggest(name, [a.name for a in accounts])}")


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _duration(flag: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None
    if seconds <= 0:
        raise click.BadParameter("must be more than 0", param_hint=flag)
    return seconds

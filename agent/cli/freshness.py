"""channel-agent mark-synced: report a successful sync of a data set to the running agent."""

from __future__ import annotations

import sys
import time

import click
import httpx

from agent.cli.common import agent_error, agent_url_option, without_password
from agent.freshness.timestamps import iso, to_unix


@click.command("mark-synced")
@click.argument("channel")
@click.option("--account", required=True, help="The account whose data was synced.")
@click.option("--dataset", required=True, help="The data set that was synced.")
@click.option("--at", "at", metavar="TIME", default=None,
              help="Time of the newest synced data: RFC 3339 (2026-11-27T04:00:00Z) or Unix "
                   "epoch seconds. Default: now.")
@agent_url_option
def mark_synced(channel: str, account: str, dataset: str, at: str | None, url: str) -> None:
    """Tell the running agent that a data set of an account was synced (a heartbeat).

    Posts to the agent's POST /api/v1/freshness, which stores it in the agent's state file;
    the data set must be configured with a freshness source of type heartbeat. Prints what
    was recorded (an older time than the agent knows does not move its data time back). Exit
    status 0 when the agent accepted it, 1 when it refused it or could not be reached.

    \b
    Example:
      channel-agent mark-synced amazon_ads --account acme-us --dataset sp_campaigns_daily \\
          --at 2026-11-27T04:00:00Z
    """
    when = time.time() if at is None else at
    body = {"channel": channel, "account": account, "dataset": dataset, "last_updated": when}
    try:
        response = httpx.post(url.rstrip("/") + "/api/v1/freshness", json=body, timeout=10)
    except httpx.HTTPError as exc:
        agent_error(f"error: could not reach the agent at {url}: {exc}", url)
    if response.status_code == 204:  # the agent parsed ``when`` as to_unix does
        click.echo(f"recorded: {channel}/{account} data set {dataset} synced at "
                   f"{iso(to_unix(when, naive=None))} (agent {without_password(url, url)})")
        return
    try:
        error = response.json()
        message = f"{error['error']} (field: {error['field']})" if error.get("field") \
            else error["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        message = f"HTTP {response.status_code}"
    click.echo(f"error: the agent refused the heartbeat: {message}", err=True)
    sys.exit(1)

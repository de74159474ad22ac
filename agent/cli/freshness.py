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
@click.option("--dataset", "datasets", required=True, multiple=True,
              help="The data set that was synced; repeat it for several (one request).")
@click.option("--at", "at", metavar="TIME", default=None,
              help="Time of the newest synced data: RFC 3339 (2026-11-27T04:00:00Z) or Unix "
                   "epoch seconds. Default: now.")
@agent_url_option
def mark_synced(channel: str, account: str, datasets: tuple[str, ...], at: str | None,
                url: str) -> None:
    """Tell the running agent that a data set of an account was synced (a heartbeat).

    Posts to the agent's POST /api/v1/freshness (several --dataset: one POST to
    /api/v1/freshness/batch), which stores it in the agent's state file; the data set must be
    configured with a freshness source of type heartbeat. Prints what was recorded (an older
    time than the agent knows does not move its data time back). Exit status 0 when the agent
    accepted every one, 1 when it refused one (the others are stored) or could not be reached.

    \b
    Example:
      channel-agent mark-synced amazon_ads --account acme-us --dataset sp_campaigns_daily \\
          --at 2026-11-27T04:00:00Z
    """
    when = time.time() if at is None else at
    bodies = [{"channel": channel, "account": account, "dataset": dataset,
               "last_updated": when} for dataset in datasets]
    path, body = (("/api/v1/freshness", bodies[0]) if len(bodies) == 1 else
                  ("/api/v1/freshness/batch", {"heartbeats": bodies}))
    try:
        response = httpx.post(url.rstrip("/") + path, json=body, timeout=10)
    except httpx.HTTPError as exc:
        agent_error(f"error: could not reach the agent at {url}: {exc}", url)
    try:
        refused = [] if response.status_code in (200, 204) else response.json()
        if isinstance(refused, dict):  # a batch's refused items, or the one error
            refused = refused.get("refused", [refused])
        messages = [_message(error, bodies) for error in refused]
        # an error without an index (a single heartbeat, a bad batch) is about all of them
        accepted = [d for i, d in enumerate(datasets)
                    if not any(error.get("index", i) == i for error in refused)]
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        messages, accepted = [f"HTTP {response.status_code}"], []
    for dataset in accepted:  # the agent parsed ``when`` as to_unix does
        click.echo(f"recorded: {channel}/{account} data set {dataset} synced at "
                   f"{iso(to_unix(when, naive=None))} (agent {without_password(url, url)})")
    for message in messages:
        click.echo(f"error: the agent refused the heartbeat: {message}", err=True)
    if messages:
        sys.exit(1)


def _message(error: dict, bodies: list[dict]) -> str:
    """The agent's reason; in a batch, after the data set it is about."""
    text = f"{error['error']} (field: {error['field']})" if error.get("field") else \
        error["error"]
    if "index" in error:
        return f"{bodies[error['index']]['dataset']}: {text}"
    return text

"""channel-agent status: ask a running agent what it knows."""

from __future__ import annotations

import sys

import click
import httpx

from agent.cli.common import agent_url_option, json_option, print_datasets, print_json, print_table


@click.command()
@agent_url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show the state of every account and the age of its data sets, as the running agent
    last saw them.

    \b
    Example:
      channel-agent status --url http://127.0.0.1:9877
    """
    try:
        response = httpx.get(url.rstrip("/") + "/api/v1/status", timeout=10)
        response.raise_for_status()
        doc = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        click.echo(f"error: could not read the status of the agent at {url}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        print_json(doc)
        return
    print_table(
        ("CHANNEL", "ACCOUNT", "REGION", "STATE", "REASON", "LAST CHECK", "LAST VALID"),
        [(a["channel"], a["account"], a["region"], a["state"], a["reason"], a["last_check"],
          a["last_valid"]) for a in doc["accounts"]],
    )
    print_datasets(doc["accounts"])
    for error in doc["plugins"]["errors"]:
        click.echo(f"plugin error: {error['plugin']}: {error['error']}", err=True)

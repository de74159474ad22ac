"""channel-agent status: ask a running agent what it knows."""

from __future__ import annotations

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


@click.command()
@agent_url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show the state of every account and the age of its data sets, as the running agent
    last saw them.

    An agent with basic auth takes the credentials in the URL; one with TLS signed by a
    private CA needs SSL_CERT_FILE=ca.crt.

    \b
    Example:
      channel-agent status --url http://127.0.0.1:9877
      CHANNEL_AGENT_URL=https://sre:PASSWORD@agent.example:9877 channel-agent status
    """
    try:
        response = httpx.get(url.rstrip("/") + "/api/v1/status", timeout=10)
        response.raise_for_status()
        doc = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        agent_error(f"error: could not read the status of the agent at {url}: {exc}", url)
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

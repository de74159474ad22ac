"""channel-agent check: check accounts once and print what was found."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import click

from agent.checks.sharding import Shard
from agent.cli.common import (
    EXIT_CONFIG_ERROR,
    config_option,
    json_option,
    print_datasets,
    print_json,
    print_table,
)
from agent.cli.inventory import with_inventory
from agent.cli.loading import load_or_exit
from agent.config.loader import Config
from agent.plugins import Plugins
from agent.service import AgentService
from agent.storage.freshness import read_freshness


@click.command()
@config_option
@click.option("--channel", default=None, help="Only this channel.")
@click.option("--account", default=None, help="Only this account.")
@json_option
def check(config_path: str, channel: str | None, account: str | None, as_json: bool) -> None:
    """Check every account (or one) once, now, and print the result.

    Runs apart from any running agent: its state file is only read (for the data times
    heartbeats reported), and agent.shard does not apply (every account can be checked from
    anywhere); polled freshness sources and inventory sources are queried once. Exit status: 0 when
    every checked credential is valid, 1 when any is invalid or could not be verified,
    2 on a configuration error. Stale data does not change the exit status.

    \b
    Example:
      channel-agent check --config config.yaml --account acme-us --json
    """
    config, plugins = load_or_exit(config_path)
    config = with_inventory(config)  # the accounts inventory sources yield now, checked too
    selected = [a for a in config.accounts()
                if (channel is None or a.channel == channel)
                and (account is None or a.name == account)]
    if not selected:
        click.echo("error: no configured account matches --channel/--account", err=True)
        sys.exit(EXIT_CONFIG_ERROR)
    docs = asyncio.run(_check(config, plugins, [a.key for a in selected]))
    if as_json:
        print_json(docs)
    else:
        print_table(
            ("CHANNEL", "ACCOUNT", "REGION", "STATE", "REASON", "DETAIL"),
            [(d["channel"], d["account"], d["region"], d["state"], d["reason"], d["detail"])
             for d in docs],
        )
        print_datasets(docs)
    sys.exit(0 if all(d["state"] == "valid" for d in docs) else 1)


async def _check(config: Config, plugins: Plugins, keys: list[tuple[str, str]]) -> list[dict]:
    one_shot = dataclasses.replace(config.agent, state_path=Path(":memory:"), shard=Shard())
    service = AgentService(dataclasses.replace(config, agent=one_shot), plugins)
    service.freshness.restore(read_freshness(config.agent.state_path))
    try:
        accounts = [service.fleet.accounts[key] for key in keys]
        states, _ = await asyncio.gather(
            asyncio.gather(*(service.scheduler.check_now(a) for a in accounts)),
            service.poller.poll_all(),
        )
        return [service.account_doc((s.channel, s.account)) for s in states]
    finally:
        await service.stop()

"""channel-agent inventory: run every inventory source once and show what it yields."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from typing import Any

import click

from agent.cli.common import config_option, json_option, print_json, print_table
from agent.cli.loading import load_or_exit
from agent.config.loader import Config
from agent.inventory.credentials import describe_credential
from agent.inventory.runner import InventoryRunner, with_discovered
from agent.status import source_status


@click.command()
@config_option
@json_option
def inventory(config_path: str, as_json: bool) -> None:
    """Run every inventory source once and print the accounts it yields (account, region,
    labels, where the credential is, never its value) and each source's errors.

    Runs apart from any running agent (nothing is written). Exit status: 0 when every source
    answered and every row was usable, 1 otherwise, 2 on a configuration error.

    \b
    Example:
      channel-agent inventory --config config.yaml --json
    """
    config, _ = load_or_exit(config_path)
    if not config.inventory_sources:
        click.echo(f"{config.source}: no inventory_sources configured", err=True)
        sys.exit(1)
    runner, _ = asyncio.run(discover(config))
    sources = {name: source_status(runner, name) for name in runner.sources}
    accounts = [_account(config, account) for status in runner.status.values()
                for account in status.accepted.accounts.values()]
    accounts.sort(key=lambda a: (a["source"], a["channel"], a["account"]))
    if as_json:
        print_json({"sources": sources, "accounts": accounts})
    else:
        print_table(("SOURCE", "CHANNEL", "ACCOUNT", "REGION", "LABELS", "CREDENTIAL"),
                    [(a["source"], a["channel"], a["account"], a["region"],
                      ",".join(f"{k}={v}" for k, v in sorted(a["labels"].items())) or "-",
                      a["credential"]) for a in accounts])
        click.echo()
        for name, status in sources.items():
            state = "ok" if status["up"] else f"FAILED: {status['error']}"
            click.echo(f"source {name} ({status['from']}): {state}; "
                       f"{status['accounts']} account(s)")
            for line in status["invalid_rows"] + status["duplicates"]:
                click.echo(f"  skipped: {line}")
    usable = all(s["up"] and not s["invalid_rows"] for s in sources.values())
    sys.exit(0 if usable else 1)


async def discover(config: Config) -> tuple[InventoryRunner, Config]:
    """Every source of ``config`` run once; the configuration with the accounts they yield
    (the file's own win over duplicates) as if the file listed them (no sources left)."""
    runner = InventoryRunner(None)
    classes = {name: type(channel) for name, channel in config.channels.items()}
    runner.configure(config.inventory_sources, classes, config.base_dir,
                     stores=config.secret_stores)
    try:
        await runner.refresh_all()
    finally:
        await runner.close()
    discovered, _ = runner.accounts({account.key for account in config.accounts()})
    return runner, dataclasses.replace(with_discovered(config, discovered),
                                       inventory_sources={})


def with_inventory(config: Config) -> Config:
    """``config`` with the accounts its inventory sources yield now (for one-shot commands);
    a failing source is reported on stderr and yields nothing."""
    if not config.inventory_sources:
        return config
    runner, config = asyncio.run(discover(config))
    for name, status in runner.status.items():
        if status.error:
            click.echo(f"warning: inventory source {name}: {status.error}", err=True)
    return config


def _account(config: Config, account: Any) -> dict[str, Any]:
    channel = config.channels[account.channel]
    return {"source": account.source, "channel": account.channel, "account": account.name,
            "region": account.region, "labels": dict(account.labels),
            "credential": describe_credential(type(channel), account.settings)}

"""channel-agent config check, channel-agent config schema."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from agent.cli.common import DEFAULT_CONFIG
from agent.cli.loading import load_or_exit
from agent.config.loader import Config
from agent.plugins import load_plugins


@click.group("config")
def config_group() -> None:
    """Work with the configuration file.

    \b
    Examples:
      channel-agent config check config.yaml
      channel-agent config schema > channel-agent.schema.json
    """


@config_group.command("check")
@click.argument("file", default=DEFAULT_CONFIG, metavar="[FILE]")
@click.option("--connect", is_flag=True,
              help="Also try each secret store once (one cheap read); exit 1 if one fails.")
def config_check(file: str, connect: bool) -> None:
    """Validate FILE and report every problem at once (exit 2 if any).

    \b
    Example:
      channel-agent config check /etc/channel-agent/config.yaml
      channel-agent config check --connect /etc/channel-agent/config.yaml
    """
    config, _ = load_or_exit(file)
    accounts = config.accounts()
    channels = ", ".join(sorted(config.channels))
    click.echo(f"{file}: OK ({len(accounts)} account(s) in channel(s) {channels})")
    if connect:
        sys.exit(asyncio.run(_connect(config)))


async def _connect(config: Config) -> int:
    stores = config.secret_stores
    try:
        results = await stores.probe()
    finally:
        await stores.close()
    for name, problem in results.items():
        store = stores.stores[name]
        where = f"secret store {name} ({store.type}, {store.mode})"
        click.echo(f"{where}: {'OK' if problem is None else 'FAILED: ' + problem}")
    if not results:
        click.echo("no secret stores configured: nothing to connect to")
    return 1 if any(problem is not None for problem in results.values()) else 0


@config_group.command("schema")
def config_schema_command() -> None:
    """Print the JSON Schema of the configuration file, with the installed plugins' channels.

    For completion and checking in an editor: save it, and start config.yaml with
    "# yaml-language-server: $schema=./channel-agent.schema.json".

    \b
    Example:
      channel-agent config schema > channel-agent.schema.json
    """
    from agent.config.schema import config_schema

    plugins = load_plugins()
    schema = config_schema(plugins.channels, plugins.freshness_sources,
                           plugins.inventory_sources, plugins.secret_stores)
    click.echo(json.dumps(schema, indent=2))

"""channel-agent config check."""

from __future__ import annotations

import click

from agent.cli.common import DEFAULT_CONFIG, load_or_exit


@click.group("config")
def config_group() -> None:
    """Work with the configuration file.

    \b
    Example:
      channel-agent config check config.yaml
    """


@config_group.command("check")
@click.argument("file", default=DEFAULT_CONFIG, metavar="[FILE]")
def config_check(file: str) -> None:
    """Validate FILE and report every problem at once (exit 2 if any).

    \b
    Example:
      channel-agent config check /etc/channel-agent/config.yaml
    """
    config, _ = load_or_exit(file)
    accounts = config.accounts()
    channels = ", ".join(sorted(config.channels))
    click.echo(f"{file}: OK ({len(accounts)} account(s) in channel(s) {channels})")

"""channel-agent: watch sales-channel API credentials and export their health to Prometheus.

\b
  channel-agent run --config config.yaml      serve /metrics, check on a schedule
  channel-agent check --config config.yaml    check every account once, print a table
  channel-agent demo                          the agent against its built-in Amazon simulator
  channel-agent reconnect CHANNEL --account NAME   re-authorise an account, safely
  channel-agent mark-synced CHANNEL --account NAME --dataset SET   report a data sync
  channel-agent inventory --config config.yaml   what the inventory sources yield

Every command has --help with an example.
"""

from __future__ import annotations

import click

from agent import __version__
from agent.cli.check import check
from agent.cli.common import command_name, with_command_name
from agent.cli.config_cmd import config_group
from agent.cli.freshness import mark_synced
from agent.cli.inventory import inventory
from agent.cli.plugins_cmd import plugins
from agent.cli.reconnect import reconnect
from agent.cli.run import demo, run
from agent.cli.status import status
from agent.redact import redact, setup_logging


@click.group(help=__doc__)
@click.version_option(__version__, prog_name="channel-agent")
def cli() -> None:
    pass


for command in (run, check, status, mark_synced, reconnect, plugins, config_group, demo,
                inventory):
    cli.add_command(command)


def build_cli() -> click.Group:
    """The command group with the commands plugins add (the register_commands hook); a
    failing hook is reported, not fatal."""
    from agent.plugins import load_plugins

    for impl in load_plugins().manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # noqa: BLE001 - one plugin must not break the CLI
            click.echo(f"warning: plugin {impl.plugin_name} could not add commands: "
                       f"{redact(str(exc))}", err=True)
    return cli


def _name_commands_as_invoked(command: click.Command) -> None:
    """Help pages show their examples as this shell runs them (see command_name)."""
    if command.help:
        command.help = with_command_name(command.help)
    for sub in getattr(command, "commands", {}).values():
        _name_commands_as_invoked(sub)


def main() -> None:
    setup_logging("warning")  # every command logs through the secret mask; run sets its level
    group = build_cli()
    _name_commands_as_invoked(group)
    group(prog_name=command_name())

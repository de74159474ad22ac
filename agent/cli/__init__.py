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

from typing import TYPE_CHECKING

import click

from agent.cli.common import command_name, with_command_name
from agent.cli.lazy import LazyGroup
from agent.redact import redact, setup_logging

if TYPE_CHECKING:
    from agent.plugins import Plugins

# name -> where it is; imported when run (see agent/cli/lazy.py)
COMMANDS = {
    "run": "agent.cli.run:run",
    "check": "agent.cli.check:check",
    "status": "agent.cli.status:status",
    "mark-synced": "agent.cli.freshness:mark_synced",
    "reconnect": "agent.cli.reconnect:reconnect",
    "plugins": "agent.cli.plugins_cmd:plugins",
    "config": "agent.cli.config_cmd:config_group",
    "demo": "agent.cli.run:demo",
    "inventory": "agent.cli.inventory:inventory",
}


def _name_commands_as_invoked(command: click.Command) -> None:
    """Help pages show their examples as this shell runs them (see command_name)."""
    if command.help:
        command.help = with_command_name(command.help)
    for sub in getattr(command, "commands", {}).values():
        _name_commands_as_invoked(sub)


class AgentGroup(LazyGroup):
    """The root group: the built-in commands (``COMMANDS``) and those plugins add (the
    register_commands hook). Plugins are loaded only for a name that is not built in or to
    list the commands, so a built-in command does not import every plugin; a plugin's command
    never replaces a built-in one."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, lazy_commands=COMMANDS, loaded=_name_commands_as_invoked,
                         **kwargs)
        self._plugins_asked = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            self.add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def add_plugin_commands(self, plugins: Plugins | None = None) -> None:
        """Call every register_commands hook of ``plugins`` (default: the installed ones)
        once; a failing hook is reported, not fatal."""
        if self._plugins_asked:
            return
        self._plugins_asked = True
        if plugins is None:
            from agent.plugins import load_plugins  # every plugin's module: only when needed

            plugins = load_plugins()
        for impl in plugins.manager.hook.register_commands.get_hookimpls():
            before = dict(self.commands)
            try:
                impl.function(cli=self)
            except Exception as exc:  # noqa: BLE001 - one plugin must not break the CLI
                click.echo(f"warning: plugin {impl.plugin_name} could not add commands: "
                           f"{redact(str(exc))}", err=True)
            for name, command in list(self.commands.items()):
                if before.get(name) is command:
                    continue
                if name in self.lazy_commands:
                    click.echo(f"warning: plugin {impl.plugin_name} added a command named "
                               f"{name!r}, which is built in; ignored", err=True)
                    if name in before:
                        self.commands[name] = before[name]
                    else:
                        del self.commands[name]
                else:
                    _name_commands_as_invoked(command)


@click.group(cls=AgentGroup, help=__doc__)
@click.version_option(package_name="channel-health-agent", prog_name="channel-agent")
def cli() -> None:
    pass


def build_cli() -> click.Group:
    """The command group, with the commands plugins add."""
    cli.add_plugin_commands()
    return cli


def main() -> None:
    setup_logging("warning")  # every command logs through the secret mask; run sets its level
    cli.help = with_command_name(__doc__ or "")
    cli(prog_name=command_name())

"""channel-agent plugins."""

from __future__ import annotations

import click

from agent.cli.common import json_option, print_json, print_table
from agent.plugins import load_plugins


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List the channel plugins found through the 'channel_agent' entry points.

    \b
    Example:
      channel-agent plugins --json
    """
    loaded = load_plugins()
    if as_json:
        print_json({
            "channels": [
                {"name": name, "title": cls.title, "provided_by": loaded.origins[name]}
                for name, cls in sorted(loaded.channels.items())
            ],
            "errors": [{"plugin": e.plugin, "error": e.error} for e in loaded.errors],
        })
        return
    rows = [(name, cls.title, loaded.origins[name])
            for name, cls in sorted(loaded.channels.items())]
    print_table(("CHANNEL", "TITLE", "PROVIDED BY"), rows)
    for error in loaded.errors:
        click.echo(f"error: plugin {error.plugin}: {error.error}", err=True)

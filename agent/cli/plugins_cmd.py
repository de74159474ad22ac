"""channel-agent plugins."""

from __future__ import annotations

import click

from agent.cli.common import json_option, print_json, print_table
from agent.plugins import load_plugins


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List the channels, freshness source types and inventory source types that plugins
    registered (the built-in ones and those found through the 'channel_agent' entry points).

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
            "freshness_sources": [
                {"type": name, "title": cls.title, "provided_by": loaded.source_origins[name]}
                for name, cls in sorted(loaded.freshness_sources.items())
            ],
            "inventory_sources": [
                {"type": name, "title": cls.title, "provided_by": loaded.inventory_origins[name]}
                for name, cls in sorted(loaded.inventory_sources.items())
            ],
            "errors": [{"plugin": e.plugin, "error": e.error} for e in loaded.errors],
        })
        return
    rows = [(name, cls.title, loaded.origins[name])
            for name, cls in sorted(loaded.channels.items())]
    print_table(("CHANNEL", "TITLE", "PROVIDED BY"), rows)
    click.echo()
    rows = [(name, cls.title, loaded.source_origins[name])
            for name, cls in sorted(loaded.freshness_sources.items())]
    print_table(("FRESHNESS SOURCE", "TITLE", "PROVIDED BY"), rows)
    click.echo()
    rows = [(name, cls.title, loaded.inventory_origins[name])
            for name, cls in sorted(loaded.inventory_sources.items())]
    print_table(("INVENTORY SOURCE", "TITLE", "PROVIDED BY"), rows)
    for error in loaded.errors:
        click.echo(f"error: plugin {error.plugin}: {error.error}", err=True)

"""What the commands that read a configuration share: load it, or print every problem and
exit 2. Apart from agent.cli.common because it imports the configuration's models and the
plugins, which the commands that only talk to a running agent (status, mark-synced) do not
need."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from agent.cli.common import EXIT_CONFIG_ERROR
from agent.config.loader import Config, ConfigError, load_config
from agent.plugins import Plugins, load_plugins


def load_with(path: str | Path, plugins: Plugins) -> Config:
    """The configuration at ``path``, read with every type ``plugins`` registered: channels,
    freshness sources, inventory sources and secret stores (built-in and plugins' alike)."""
    return load_config(path, plugins.channels, sources=plugins.freshness_sources,
                       inventory_types=plugins.inventory_sources, stores=plugins.secret_stores)


def load_or_exit(path: str) -> tuple[Config, Plugins]:
    """Load plugins and the config; on any problem print every one of them and exit 2."""
    plugins = load_plugins()
    try:
        return load_with(path, plugins), plugins
    except ConfigError as exc:
        exit_with_problems("the configuration", exc)


def exit_with_problems(what: str, exc: ConfigError) -> NoReturn:
    click.echo(f"error: {len(exc.problems)} problem(s) in {what}:", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(EXIT_CONFIG_ERROR)

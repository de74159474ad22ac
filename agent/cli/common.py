"""What several commands share: loading plugins and configuration, printing tables."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from agent.config import Config, ConfigError, load_config
from agent.plugins import Plugins, load_plugins
from agent.websecurity import WebSecurity

EXIT_CONFIG_ERROR = 2
DEFAULT_CONFIG = "config.yaml"

config_option = click.option(
    "--config", "config_path", metavar="FILE",
    default=lambda: os.environ.get("CHANNEL_AGENT_CONFIG", DEFAULT_CONFIG),
    show_default=f"$CHANNEL_AGENT_CONFIG or {DEFAULT_CONFIG}",
    help="Agent configuration file.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def load_or_exit(path: str) -> tuple[Config, Plugins]:
    """Load plugins and the config; on any problem print every one of them and exit 2."""
    plugins = load_plugins()
    try:
        return load_config(path, plugins.channels), plugins
    except ConfigError as exc:
        _exit_with_problems("the configuration", exc)


def web_security_or_exit(path: str | None, read_without_auth: bool) -> WebSecurity:
    """The web config of ``--web.config.file``; on any problem print every one and exit 2."""
    try:
        return WebSecurity(path, read_without_auth=read_without_auth)
    except ConfigError as exc:
        _exit_with_problems("the web configuration", exc)


def _exit_with_problems(what: str, exc: ConfigError) -> NoReturn:
    click.echo(f"error: {len(exc.problems)} problem(s) in {what}:", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(EXIT_CONFIG_ERROR)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

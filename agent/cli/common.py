"""What several commands share: loading plugins and configuration, printing tables."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from agent.redact import redact

EXIT_CONFIG_ERROR = 2
DEFAULT_CONFIG = "config.yaml"
PROG = "channel-agent"

config_option = click.option(
    "--config", "config_path", metavar="FILE",
    default=lambda: os.environ.get("CHANNEL_AGENT_CONFIG", DEFAULT_CONFIG),
    show_default=f"$CHANNEL_AGENT_CONFIG or {DEFAULT_CONFIG}",
    help="Agent configuration file.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
agent_url_option = click.option(
    "--url", default=lambda: os.environ.get("CHANNEL_AGENT_URL", "http://127.0.0.1:9877"),
    show_default="$CHANNEL_AGENT_URL or http://127.0.0.1:9877",
    help="Base URL of the running agent; basic-auth credentials go in it "
         "(https://user:PASSWORD@host:9877), SSL_CERT_FILE names a private CA.",
)


def command_name() -> str:
    """This program as a fresh shell runs it, for the commands it prints: ``channel-agent``
    when that is what PATH finds, else the absolute path it was started by (e.g.
    ``.venv/bin/channel-agent`` of a checkout whose virtualenv is not activated)."""
    invoked = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path(PROG)
    if invoked.name != PROG:  # python -c, pytest, an embedding: the documented name
        return PROG
    found = shutil.which(PROG)
    if found and Path(found).resolve() == invoked.resolve():
        return PROG
    return shlex.quote(str(invoked.absolute()))


_PROG_IN_TEXT = re.compile(rf"(?<![\w/.-]){re.escape(PROG)}(?= )")


def with_command_name(text: str) -> str:
    """``text`` (a help page's examples) with each ``channel-agent ...`` command line in the
    form :func:`command_name` gives; paths such as /etc/channel-agent/ stay."""
    name = command_name()
    return text if name == PROG else _PROG_IN_TEXT.sub(lambda _: name, text)


def without_password(text: str, url: str) -> str:
    """``text`` (which may quote ``url``) with the password of ``url`` masked."""
    password = urlsplit(url).password
    return redact(text, [password] if password else [])


def agent_error(message: str, url: str) -> NoReturn:
    """Print ``message`` (which may quote ``url``) without the password in the URL; exit 1."""
    click.echo(without_password(message, url), err=True)
    sys.exit(1)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_datasets(accounts: Sequence[dict[str, Any]]) -> None:
    """A second table under the accounts: each data set with its age and threshold, next to
    its account's credential state; nothing when no data set is configured."""
    rows = [
        (a["channel"], a["account"], a["state"], d["dataset"], d["source"],
         d["state"] + (" (source down)" if d["source_up"] is False else ""),
         d["age"] or "-", d["max_age"], d["last_updated"] or "-")
        for a in accounts for d in a.get("datasets", [])
    ]
    if rows:
        click.echo()
        print_table(("CHANNEL", "ACCOUNT", "CREDENTIAL", "DATA SET", "SOURCE", "DATA", "AGE",
                     "MAX AGE", "LAST UPDATED"), rows)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

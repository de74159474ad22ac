"""What ``channel-agent reconnect`` prints: progress on standard error, the results on
standard output, or one JSON document with ``--json``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from agent.channel import Account, Channel, ReconnectError, VerifyResult
from agent.cli.common import print_json, print_table
from agent.config.loader import Config
from agent.config.yamltree import env_variable_at
from agent.freshness.timestamps import iso
from agent.reconnect import Outcome
from agent.storage.state import StateStore


class ReconnectReport:
    """What a reconnect prints: progress on stderr, results on stdout (or one JSON doc)."""

    def __init__(self, config: Config, channel: Channel, account: Account, mode: str,
                 as_json: bool) -> None:
        self.config, self.channel, self.account = config, channel, account
        self.mode, self.as_json = mode, as_json
        self.doc: dict[str, Any] = {"channel": account.channel, "account": account.name,
                                    "region": account.region, "mode": mode, "result": None}

    def targets(self, result: VerifyResult) -> None:
        """What the new token reaches, in the channel's words (its target_kind)."""
        kind = self.channel.target_kind or "target"
        expected = set(result.expected)
        rows = [{"id": t.id, "country": t.country, "kind": t.kind, "name": t.name,
                 "expected": t.id in expected} for t in result.targets]
        self.doc.update(target_kind=kind, targets=rows, missing_targets=list(result.missing))
        if self.as_json:
            return
        click.echo(f"{kind.capitalize()}s the new credential reaches ({len(rows)}):")
        print_table((kind.upper(), "COUNTRY", "TYPE", "NAME", "EXPECTED"),
                    [(r["id"], r["country"], r["kind"], r["name"], "yes" if r["expected"] else "")
                     for r in rows])
        for target in result.missing:
            click.echo(f"MISSING: expected {kind} {target} is not reachable with this consent")

    def stored(self, outcome: Outcome, store: StateStore | None) -> None:
        grant = outcome.grant
        self.doc.update(result="reconnected", refresh_token_fingerprint=grant.fingerprint,
                        granted=iso(grant.granted), reconnected=iso(grant.reconnected),
                        stored_in=_str(outcome.stored_in), backup=_str(outcome.backup),
                        state_file=_str(store.path) if store else None)
        lines = [f"Reconnected {self.account.channel}/{self.account.name}."]
        if outcome.stored_in is not None:
            mode = " (mode 0600)" if isinstance(outcome.stored_in, Path) else ""
            lines.append(f"  new credential: fingerprint {grant.fingerprint}, stored in "
                         f"{outcome.stored_in}{mode}")
            if outcome.backup is not None:
                lines.append(f"  previous token kept as {outcome.backup}")
        else:
            variable = env_variable_at(self.config.source, outcome.source)
            where = f"environment variable {variable}" if variable else outcome.source
            self.doc.update(environment_variable=variable, refresh_token=outcome.token.reveal())
            lines.append(f"  new credential (fingerprint {grant.fingerprint}), NOT stored: "
                         f"this account's token comes from {where} "
                         f"({self.config.source}: {outcome.source}). Put it there, then restart "
                         f"the agent, which reads it at start:")
            lines.append(outcome.token.reveal())
        if store is not None:
            lines.append(f"  grant recorded in {store.path}: the credential's age starts now")
        else:
            lines.append("  agent.state_path is :memory:, so no grant was recorded")
        if not self.as_json:
            click.echo("\n".join(lines))

    def agent(self, doc: dict[str, Any]) -> None:
        self.doc["agent"] = doc
        if self.as_json:
            return
        if "error" in doc:
            click.echo(f"  agent {doc['url']}: {doc['error']}")
            return
        click.echo(f"  agent {doc['url']} checked the account:")
        click.echo(f"    before: {_state_line(doc['before'])}")
        click.echo(f"    after:  {_state_line(doc['after'])}")

    def done(self, note: str) -> None:
        self.doc["note"] = note
        if self.as_json:
            print_json(self.doc)
        elif note:
            click.echo(note)

    def fail(self, err: ReconnectError, code: int, hint: str = "") -> NoReturn:
        self.doc.update(result="failed", error={"reason": err.reason, "message": err.message})
        if self.as_json:
            print_json(self.doc)
        click.echo(f"error: {err.message}", err=True)
        if hint:
            click.echo(hint, err=True)
        sys.exit(code)


def _state_line(status: dict[str, Any]) -> str:
    reason = f" ({status['reason']})" if status.get("reason") else ""
    return f"{status['state']}{reason}"


def note(text: str) -> None:
    """A progress line, on standard error (standard output is for results)."""
    click.echo(text, err=True)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)

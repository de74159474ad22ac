"""channel-agent reconnect --list: the accounts that need reconnecting, with their commands."""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import NoReturn

import click

from agent.channel import Account, Channel
from agent.cli.common import EXIT_CONFIG_ERROR, command_name, print_json, print_table
from agent.config.loader import MEMORY, Config
from agent.freshness.timestamps import iso
from agent.reasons import CREDENTIAL, PERMISSION
from agent.storage.fleet import Fleet
from agent.storage.state import AccountState, StateStore, state_word

# Classes of reasons the account holder can fix. An application-class reason
# (invalid_client, ...) is the platform's problem, for every account: a reconnect won't help.
ACCOUNT_CLASSES = frozenset({CREDENTIAL, PERMISSION})


def show_accounts_to_reconnect(config: Config, config_path: str, channel_name: str | None,
                               within: float, as_json: bool) -> None:
    """--list: invalid credentials, unreachable targets, credentials expiring soon."""
    store = open_store(config, required=True)
    assert store is not None
    fleet = Fleet(store)
    fleet.configure(config)
    grants = store.load_grants()
    now = time.time()
    rows = []
    for account, state in fleet:
        if channel_name is not None and account.channel != channel_name:
            continue
        grant = grants.get(account.key)
        if grant is not None and grant.reconnected > (state.last_check or 0):
            continue  # reconnected since its last check: what that check found is history
        channel = config.channels[account.channel]
        why = _why(state, channel, now, within)
        if why:
            rows.append({"channel": account.channel, "account": account.name,
                         "region": account.region, "state": state_word(state), "why": why,
                         "command": reconnect_command(config_path, channel, account)})
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("No account needs reconnecting.")
        return
    print_table(("CHANNEL", "ACCOUNT", "REGION", "WHY", "COMMAND"),
                [(r["channel"], r["account"], r["region"], "; ".join(r["why"]), r["command"])
                 for r in rows])


def _why(state: AccountState, channel: Channel, now: float, within: float) -> list[str]:
    why = []
    missing = sorted(p for p, reachable in state.targets.items() if not reachable)
    # the last conclusive rejection: a later transient check (a timeout) does not clear it
    reason = channel.reason_table().get(state.rejection or "")
    fixable = state.valid is False and reason is not None and reason.cls in ACCOUNT_CLASSES
    # a permission loss with unreachable targets: the line below says it better
    if fixable and not (missing and reason.cls == PERMISSION):
        why.append(f"credential invalid ({state.rejection})")
    if missing:
        why.append(f"{channel.target_kind or 'target'}(s) not reachable: {', '.join(missing)}")
    expiry = channel.refresh_token_expiry(state.account, state.refresh_issued) \
        if state.refresh_issued is not None and not state.rejected else None
    if expiry is not None:
        if expiry <= now:
            why.append(f"credential expired {iso(expiry)}")
        elif expiry - now <= within:
            why.append(f"credential expires {iso(expiry)}")
    return why


def reconnect_command(config_path: str, channel: Channel, account: Account) -> str:
    """The reconnect command, or the channel's own fix instruction when it has no flow."""
    if channel.reconnector() is None:
        return channel.fix_command(account) or "(this channel gives no fix instruction)"
    args = ["reconnect", channel.name, "--account", account.name,
            "--config", os.path.abspath(config_path)]
    ref = channel.refresh_token_ref(account)
    if ref is not None and ref.path is None and ref.store is None:
        args.append("--show-token")
    return f"{command_name()} {shlex.join(args)}"


def open_store(config: Config, *, required: bool) -> StateStore | None:
    path = config.agent.state_path
    if str(path) == MEMORY:
        if required:
            usage_exit("agent.state_path is :memory:; this needs the agent's state file")
        return None
    try:
        return StateStore(path)
    except Exception as exc:  # noqa: BLE001 - sqlite3 errors, a newer schema
        usage_exit(f"cannot open the state file {path}: {exc}")


def usage_exit(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_CONFIG_ERROR)

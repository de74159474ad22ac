"""The status documents: what the status API, the pages and the CLI's ``--json`` say about
an account, a channel and an inventory source, as plain, secret-free data."""

from __future__ import annotations

from typing import Any

from agent.channel import Account, Channel
from agent.freshness.timestamps import iso
from agent.inventory.runner import InventoryRunner
from agent.storage.state import AccountState, state_word


def refresh_expiry(state: AccountState, channel: Channel | None) -> float | None:
    """When the refresh token is expected to expire; None without a known lifetime or issue
    time, and for a rejected credential (AccountState.rejected)."""
    if channel is None or not state.refresh_issued or state.rejected:
        return None
    return channel.refresh_token_expiry(state.account, state.refresh_issued)


def channel_status(channel: Channel, client_valid: bool | None) -> dict[str, Any]:
    """What the status API says about a channel: its title, what its consents reach and, for
    a channel with an application client, that client's validity and secret expiry."""
    doc: dict[str, Any] = {"title": channel.title or channel.name,
                           "target_kind": channel.target_kind or None}
    if channel.application_client is not None:
        doc["client_valid"] = client_valid
        doc["client_secret_expiry"] = iso(channel.client_secret_expiry())
    return doc


def account_status(state: AccountState, channel: Channel | None,
                   datasets: list[dict[str, Any]] | None = None,
                   account: Account | None = None) -> dict[str, Any]:
    """One account's state as plain, secret-free data (status API, CLI ``--json``);
    ``datasets`` from :meth:`FreshnessTracker.account_datasets`; ``account`` adds its labels
    and source."""
    expiry = refresh_expiry(state, channel)
    return {
        "channel": state.channel,
        "account": state.account,
        "region": state.region,
        "state": state_word(state),
        "state_since": iso(state.state_since),
        "broken_since": iso(state.broken_since),
        "valid": state.valid,
        "check_success": state.check_success,
        "reason": state.reason,
        "detail": state.detail,
        "last_check": iso(state.last_check),
        "last_valid": iso(state.last_valid),
        "refresh_token_fingerprint": state.refresh_fingerprint,
        "refresh_token_issued": iso(state.refresh_issued),
        "refresh_token_expiry": iso(expiry),
        "access_token_expiry": iso(state.access_expires),
        "target_kind": (channel.target_kind or None) if channel else None,
        "targets": state.targets,
        "targets_reached": state.targets_reached,
        "reconnected": iso(state.reconnected),
        "datasets": datasets or [],
        "labels": dict(account.labels) if account else {},
        "source": account.source if account else None,
    }


def source_status(runner: InventoryRunner, name: str) -> dict[str, Any]:
    source, status = runner.sources[name], runner.status[name]
    held = status.held
    return {
        "type": source.type,
        "from": source.describe(),
        "up": status.up,
        "error": status.error,
        "accounts": len(status.accepted.accounts),
        "last_success": iso(status.last_success),
        "invalid_rows": [str(problem) for problem in status.problems],
        "duplicates": status.duplicates,
        "removal_held": None if held is None else {
            "removing": held.removing, "of": held.of, "since": iso(held.since)},
    }

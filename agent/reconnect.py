"""Re-authorising an account: the channel-neutral steps of ``channel-agent reconnect``.

The channel's :class:`~agent.channel.Reconnector` builds the consent URL, exchanges the code
and verifies the new token. This module does the rest, the same way for every channel:

1. a random ``state`` and a PKCE pair (S256) per attempt (:func:`new_attempt`);
2. the redirect (:mod:`agent.reconnect_redirect`): a one-request server on the loopback
   ``redirect_uri``, a URL or code pasted on standard input, or a link the running agent
   completes (:func:`create_link` records it, ``agent.web.oauth_callback`` receives it);
3. exchange, verify, and only then store the token atomically with a backup, and record the
   grant in the state file (:func:`complete`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.channel import (
    DEFAULT_REDIRECT_URI,
    Account,
    Channel,
    CheckContext,
    ReconnectError,
    Reconnector,
    Secret,
    SecretRef,
    VerifyResult,
)
from agent.redact import redact
from agent.secrets.base import OBSERVER, StoreUnavailable, WriteConflict
from agent.storage.secretfile import write_secret_file
from agent.storage.state import Grant, ReconnectLink, StateStore

CALLBACK_PATH = "/oauth/callback"  # where the running agent receives the redirects of links
STEP_TIMEOUT = 60.0  # exchange and verification together, retries included
LINK_RETENTION = 7 * 86400.0  # finished links stay visible in --pending this long


@dataclass(frozen=True)
class Attempt:
    """One reconnect attempt: what the redirect must match and the exchange must send."""

    state: str
    code_verifier: str
    redirect_uri: str
    consent_url: str


def new_attempt(reconnector: Reconnector, account: Account, redirect_uri: str) -> Attempt:
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters; RFC 7636 wants 43 to 128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    url = reconnector.consent_url(account, state, challenge, redirect_uri)
    return Attempt(state=state, code_verifier=verifier, redirect_uri=redirect_uri,
                   consent_url=url)


def redirect_uri_of(channel: Channel) -> str:
    return str(channel.settings.get("redirect_uri") or DEFAULT_REDIRECT_URI)


# --- before anything is asked of the account holder ---------------------------------------


def preflight(channel: Channel, account: Account, *, link: bool = False,
              show_token: bool = False) -> Reconnector:
    """The channel's reconnector, once it is certain the new token can be put somewhere.

    Fails (reason ``unsupported``) before any consent is asked: a token that cannot be
    stored would be lost."""
    reconnector = channel.reconnector()
    if reconnector is None:
        raise ReconnectError("unsupported",
                             f"channel {channel.name} has no reconnect flow")
    ref = channel.refresh_token_ref(account)
    if ref is None:
        raise ReconnectError("unsupported", f"channel {channel.name} declares no refresh token "
                                            f"option, so a new token cannot be stored")
    option = channel.refresh_tokens.option if channel.refresh_tokens else "refresh_token"
    if ref.store is not None:
        return _store_preflight(reconnector, account, ref, show_token)
    if ref.path is None:
        if link:
            raise ReconnectError(
                "unsupported", f"account {account.name} takes its refresh token from the "
                               f"configuration ({ref.source}), and a link is completed by the "
                               f"agent, which cannot hand the token to you: configure "
                               f"{option}_file, or reconnect without --link")
        if not show_token:
            raise ReconnectError(
                "unsupported", f"account {account.name} takes its refresh token from the "
                               f"configuration ({ref.source}), usually an environment variable, "
                               f"which this command cannot change: pass --show-token to have the "
                               f"new token printed so you can put it there, or configure "
                               f"{option}_file")
        return reconnector
    if show_token:
        raise ReconnectError("unsupported", f"--show-token is only for tokens given in the "
                                            f"configuration; this one is written to {ref.path}")
    directory = next(p for p in (ref.path.parent, *ref.path.parent.parents) if p.exists())
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ReconnectError("unsupported", f"cannot write in {directory}, where the new token "
                                            f"must go ({ref.path})")
    return reconnector


def _store_preflight(reconnector: Reconnector, account: Account, ref: SecretRef,
                     show_token: bool) -> Reconnector:
    if show_token:
        raise ReconnectError("unsupported", f"--show-token is only for tokens given in the "
                                            f"configuration; this one goes to secret store "
                                            f"{ref.store}")
    stores = ref.registry
    if stores.mode(ref) == OBSERVER:
        raise ReconnectError("unsupported", f"account {account.name}'s token is in secret store "
                                            f"{ref.store}, which is in observer mode: the "
                                            f"platform owns that token, reconnect through it")
    if not stores.stores[ref.store].writable:
        raise ReconnectError("unsupported", f"secret store {ref.store} cannot write tokens "
                                            f"(configure its write_command or write_query)")
    return reconnector


# --- exchange, verify, store ---------------------------------------------------------------


class TargetsMissing(ReconnectError):
    """The new token works but does not reach every expected target; nothing was stored."""

    def __init__(self, result: VerifyResult, target_kind: str = "") -> None:
        missing = ", ".join(result.missing)
        super().__init__(
            "targets_missing",
            f"the new consent does not reach the expected {target_kind or 'target'}(s) "
            f"{missing}: the user who consented lacks access to them (a permissions problem, "
            f"not a token problem); nothing was stored")
        self.result = result


@dataclass
class Outcome:
    """A completed reconnect."""

    result: VerifyResult
    grant: Grant
    # a file, a secret store ("secret store NAME, key KEY"), or None: the token comes from
    # the configuration (environment)
    stored_in: Path | str | None
    backup: Path | None
    source: str  # where the token is configured, e.g. channels.x.accounts[0].refresh_token

    @property
    def token(self) -> Secret:
        return self.result.refresh_token


async def complete(
    channel: Channel,
    account: Account,
    code: str,
    attempt: Attempt | ReconnectLink,
    ctx: CheckContext,
    store: StateStore | None,
    *,
    accept_missing_targets: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Outcome:
    """Exchange ``code``, verify the token, store it (file) and record the grant.

    Raises :class:`ReconnectError` (nothing stored) when any step fails."""
    reconnector = channel.reconnector()
    assert reconnector is not None
    progress("exchanging the authorisation code for a new credential")
    token = await reconnector.exchange(account, code, attempt.code_verifier,
                                       attempt.redirect_uri, ctx)
    granted = ctx.clock()
    progress(f"verifying the new credential: the {channel.target_kind or 'target'}s it "
             f"reaches")
    result = await reconnector.verify(account, token, ctx)
    if result.missing and not accept_missing_targets:
        raise TargetsMissing(result, channel.target_kind)
    ref = channel.refresh_token_ref(account)
    assert ref is not None, "preflight() first"
    backup = None
    stored_in: Path | str | None = ref.path
    if ref.store is not None:
        stored_in = f"secret store {ref.store}, key {ref.key}"
        try:
            await ref.registry.write(ref, result.refresh_token, read_first=True)
        except (StoreUnavailable, WriteConflict) as exc:
            raise ReconnectError(
                "store_failed", f"could not write the new token to {stored_in} "
                                f"({redact(str(exc), [result.refresh_token.reveal()])}); the "
                                f"token there is untouched; fix this and run the reconnect "
                                f"again") from None
    elif ref.path is not None:
        try:
            backup = write_secret_file(ref.path, result.refresh_token)
        except OSError as exc:
            raise ReconnectError(
                "store_failed", f"could not write {ref.path} ({exc.strerror or exc}); the "
                                f"previous token is untouched; fix this and run the reconnect "
                                f"again") from None
    grant = Grant(result.refresh_token.fingerprint(), granted=granted, reconnected=ctx.clock())
    if store is not None:
        store.record_grant(account.channel, account.name, grant)
    return Outcome(result=result, grant=grant, stored_in=stored_in, backup=backup,
                   source=ref.source)


# --- links ------------------------------------------------------------------------------


def create_link(store: StateStore, channel: Channel, account: Account, reconnector: Reconnector,
                redirect_uri: str, *, accept_missing_targets: bool = False,
                now: float | None = None) -> tuple[ReconnectLink, int]:
    """Record an open link for the account (replacing its open ones); returns it and how many
    it replaced."""
    now = time.time() if now is None else now
    attempt = new_attempt(reconnector, account, redirect_uri)
    expiry = float(channel.settings.get("reconnect_link_expiry") or 86400.0)
    link = ReconnectLink(
        state=attempt.state, channel=account.channel, account=account.name,
        region=account.region, redirect_uri=redirect_uri, code_verifier=attempt.code_verifier,
        consent_url=attempt.consent_url, created=now, expires=now + expiry,
        accept_missing_targets=accept_missing_targets,
    )
    store.purge_links(before=now - LINK_RETENTION)
    replaced = store.add_link(link, now)
    return link, replaced

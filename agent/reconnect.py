"""Re-authorising an account: the channel-neutral steps of ``channel-agent reconnect``.

The channel's :class:`~agent.channel.Reconnector` builds the consent URL, exchanges the code
and verifies the new token. This module does the rest, the same way for every channel:

1. a random ``state`` and a PKCE pair (S256) per attempt (:func:`new_attempt`);
2. the redirect, one of three ways: a one-request server on the loopback ``redirect_uri``
   (:class:`LocalCallback`), a URL or code pasted on standard input (:func:`read_pasted`),
   or a link the running agent completes (:func:`create_link`, ``agent.web.oauth_callback``);
   :func:`code_from_redirect` checks ``state`` and ``error=`` either way;
3. exchange, verify, and only then store the token atomically with a backup, and record the
   grant in the state file (:func:`complete`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import ipaddress
import os
import re
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

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
_LOOPBACK_NAMES = ("localhost",)


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


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


# --- the redirect -----------------------------------------------------------------------


def code_from_redirect(params: Mapping[str, str], state: str | None,
                       reconnector: Reconnector) -> str:
    """The authorisation code of a redirect; :class:`ReconnectError` for anything else.

    ``state`` None: the user pasted a bare code, there is nothing to compare."""
    if state is not None:
        got = params.get("state")
        if got is None:
            raise ReconnectError("state_mismatch", "the redirect carries no state: it does "
                                                   "not answer this reconnect")
        if not hmac.compare_digest(got.encode(), state.encode()):
            raise ReconnectError("state_mismatch", "the redirect's state does not match this "
                                                   "reconnect (an old or foreign consent)")
    reconnector.check_redirect(params)
    if "error" in params:
        raise reconnector.redirect_error(_clean(params["error"]),
                                         _clean(params.get("error_description", "")))
    # a pasted bare code arrives as "code", whatever the provider calls it in its redirect
    code = (params.get(reconnector.code_param) or params.get("code") or "").strip()
    if not code:
        raise ReconnectError("rejected", "the redirect carries neither a code nor an error")
    return code


def parse_pasted(text: str) -> tuple[dict[str, str], bool]:
    """The query of a pasted redirect URL (or query string), or a bare code.

    Returns the parameters and whether they came with their URL (so ``state`` can be
    checked)."""
    text = text.strip()
    if not text:
        raise ReconnectError("timeout", "nothing was pasted")
    if "=" not in text:
        return {"code": text}, False
    query = urlsplit(text).query if "?" in text else text
    return dict(parse_qsl(query, keep_blank_values=True)), True


async def read_pasted(stream: IO[str], timeout: float) -> str:
    """One line from ``stream``, without blocking the event loop; ReconnectError on timeout/EOF.

    A daemon thread reads, so a process that gives up does not wait for the line."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not future.done():
            future.set_result(line)

    def read() -> None:
        try:
            line = stream.readline()
        except (OSError, ValueError):
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="reconnect-stdin", daemon=True).start()
    try:
        line = await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise ReconnectError("timeout", f"no redirect URL was pasted within {timeout:g}s; "
                                        f"nothing was changed") from None
    if not line:
        raise ReconnectError("timeout", "standard input ended before a redirect URL was pasted; "
                                        "nothing was changed")
    return line


class LocalCallback:
    """A one-request web server on the loopback ``redirect_uri``, for the local flow.

    Only the redirect's host (loopback), port and path are served. The first request to the
    path ends the wait: its code, or the reason it carries none; anything else is a 404."""

    def __init__(self, redirect_uri: str, state: str, reconnector: Reconnector) -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not is_loopback(redirect_uri):
            raise ReconnectError(
                "unsupported", f"the local flow needs an http://127.0.0.1:PORT/... redirect_uri, "
                               f"not {redirect_uri}: use --no-browser or --link")
        self.redirect_uri = redirect_uri
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.state = state
        self.reconnector = reconnector
        self._outcome: asyncio.Future[str] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._outcome = asyncio.get_running_loop().create_future()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        hosts = ["127.0.0.1", "::1"] if self.host in _LOOPBACK_NAMES else [self.host]
        bound = 0
        problem = ""
        for host in hosts:
            try:
                await web.TCPSite(self._runner, host, self.port).start()
                bound += 1
            except OSError as exc:
                problem = exc.strerror or type(exc).__name__
        if not bound:
            await self.stop()
            raise ReconnectError(
                "unsupported", f"cannot listen on {self.host}:{self.port} for the redirect "
                               f"({problem}): free the port, or use --no-browser")

    async def wait(self, timeout: float) -> str:
        assert self._outcome is not None, "start() first"
        try:
            return await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except TimeoutError:
            raise ReconnectError("timeout", f"no redirect arrived at {self.redirect_uri} within "
                                            f"{timeout:g}s; nothing was changed") from None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        assert self._outcome is not None
        if request.path != self.path or request.method != "GET":
            return web.Response(status=404, text="Not found.\n")
        if self._outcome.done():
            return result_page(409, "Already answered",
                               "This reconnect already received its answer. Nothing was changed.")
        try:
            code = code_from_redirect(request.query, self.state, self.reconnector)
        except ReconnectError as err:
            self._outcome.set_exception(err)
            return result_page(400, "Reconnect stopped",
                               f"{err.message}. Nothing was changed. You can close this tab.")
        self._outcome.set_result(code)
        return result_page(200, "Consent received",
                           "channel-agent received the authorisation. You can close this tab; "
                           "the terminal shows the result.")


def can_open_browser() -> bool:
    """Whether a browser can open here (not over a plain SSH session)."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> None:
    """Open ``url`` in the background; some browsers block until they exit."""
    threading.Thread(target=webbrowser.open, args=(url,), name="reconnect-browser",
                     daemon=True).start()


def result_page(status: int, title: str, message: str) -> web.Response:
    """The plain page the account holder's browser shows at the end."""
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>body{{font-family:sans-serif;margin:3em;max-width:40em}}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
            f"</body></html>\n")
    return web.Response(status=status, text=page, content_type="text/html")


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str, limit: int = 200) -> str:
    """A redirect parameter as safe text: anyone can send one to a callback."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"

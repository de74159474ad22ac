"""The redirect of a reconnect: where the account holder's browser brings back the code.

One of three ways (the channel-neutral steps around them are in :mod:`agent.reconnect`): a
one-request server on the loopback ``redirect_uri`` (:class:`LocalCallback`), a URL or code
pasted on standard input (:func:`read_pasted`, :func:`parse_pasted`), or a link the running
agent completes (``agent.web.oauth_callback``). :func:`code_from_redirect` checks ``state``
and ``error=`` for all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import ipaddress
import os
import re
import sys
import threading
import webbrowser
from collections.abc import Mapping
from typing import IO
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from agent.reconnector import ReconnectError, Reconnector

_LOOPBACK_NAMES = ("localhost",)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str, limit: int = 200) -> str:
    """A redirect parameter as safe text: anyone can send one to a callback."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The HTTP transport under every channel's ``httpx.AsyncClient``: aiohttp's client.

Plugins program against httpx; what sends the bytes is replaceable. httpx's own transport
(httpcore) costs several times the CPU of aiohttp per request, and more the more connections
its pool holds (it scans every connection per request): at 10,000 accounts that is most of
the agent's CPU (docs/performance.md). This transport hands each request to one aiohttp
session and maps aiohttp's errors onto httpx's, so a timeout is still a timeout
(``httpx.TimeoutException``) and a refused or broken connection a network error
(``httpx.NetworkError`` / ``httpx.RemoteProtocolError``).

(The ``httpx-aiohttp`` package does the same, but maps every aiohttp connection error,
a refused connection included, to ``httpx.ConnectTimeout``: a network failure would be
reported as ``timeout``.)
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import ssl
import threading
import time
import urllib.request
from typing import Any

import aiohttp
import httpx
import yarl

from agent.checks import httpx_direct
from agent.checks.httpretry import TOTAL_TIMEOUT

_SET_BY_AIOHTTP = (b"host", b"content-length")
# For a request whose sender bounds the whole exchange (TOTAL_TIMEOUT): aiohttp arms none of
# its timers (pool wait, each read), which could only fire after the sender's.
_NO_TIMERS = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)
# Headers aiohttp adds to a request that lacks them (its defaults; Content-Type from the
# body's payload). httpx sent none it was not given, so a request without one asks aiohttp
# to skip it. Asking per request, not for the whole session: a session's skip list makes
# aiohttp build and merge a header dict at every request (3% of py-spy's samples of
# a check cycle).
_ADDED_BY_AIOHTTP = ((b"user-agent", "User-Agent"), (b"accept", "Accept"),
                     (b"accept-encoding", "Accept-Encoding"))


class ChannelClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` a channel gets: one per channel, shared by its accounts, so it
    keeps no cookies (one account's must never ride along with another's; Amazon's APIs use
    none). It also saves httpx's cookie bookkeeping on every response.

    :meth:`send` goes straight to the transport when nothing of httpx's send pipeline applies
    (no auth, no redirects followed, no event hooks, no mounts, not streamed): the generators
    of the auth and redirect loops, the stream wrapper and the log line cost about as much CPU
    as aiohttp sending the request (docs/performance.md). The response is the same: read,
    with its request, its ``elapsed`` and the client's default encoding; a body the transport
    received whole and unencoded is taken as it is (:mod:`agent.checks.httpx_direct`).
    :meth:`build_request` builds the common request (an absolute ``httpx.URL``, a dict of
    headers, a ``bytes`` body) in one step, the same request httpx would build.
    """

    def build_request(self, method: str, url: httpx.URL | str, *, content: Any = None,
                      data: Any = None, files: Any = None, json: Any = None,
                      params: Any = None, headers: Any = None, cookies: Any = None,
                      timeout: Any = httpx.USE_CLIENT_DEFAULT,
                      extensions: Any = None) -> httpx.Request:
        if data is None and files is None and json is None and params is None and not cookies:
            if extensions is None or "timeout" not in extensions:
                chosen = self.timeout if timeout is httpx.USE_CLIENT_DEFAULT else (
                    httpx.Timeout(timeout))
                extensions = {**(extensions or {}), "timeout": chosen.as_dict()}
            request = httpx_direct.build_request(self, method, url, content, headers,
                                                 extensions)
            if request is not None:
                return request
        return super().build_request(method, url, content=content, data=data, files=files,
                                     json=json, params=params, headers=headers,
                                     cookies=cookies, timeout=timeout, extensions=extensions)

    async def send(self, request: httpx.Request, *, stream: bool = False,
                   auth: Any = httpx.USE_CLIENT_DEFAULT,
                   follow_redirects: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        if (stream or auth is not httpx.USE_CLIENT_DEFAULT or self._auth is not None
                or follow_redirects is True or self.follow_redirects or self._mounts
                or self._event_hooks["request"] or self._event_hooks["response"]):
            return await super().send(request, stream=stream, auth=auth,
                                      follow_redirects=follow_redirects)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self.timeout.as_dict()
        started = time.perf_counter()
        response = await self._transport.handle_async_request(request)
        response.request = request
        response.default_encoding = self._default_encoding
        if not httpx_direct.read_in_memory(response):
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, value: object) -> None:
        raise AttributeError("a channel's client keeps no cookies")


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass


_NO_COOKIES = _NoCookies()


_verifying: list[ssl.SSLContext] = []  # the one context, once made
_making = threading.Lock()


def verify_by_default() -> ssl.SSLContext:
    """httpx's verifying context (its CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), one for
    the process: loading the bundle costs 20-35 ms of CPU, which every channel's transport
    paid while the agent started."""
    with _making:
        if not _verifying:
            _verifying.append(httpx.create_ssl_context())
        return _verifying[0]


@functools.cache  # once per process
def load_verify_by_default_soon() -> None:
    """Make :func:`verify_by_default`'s context in a thread, now: reading the CA bundle
    (~20 ms at a start) releases the GIL, so it runs beside the start instead of stalling the
    event loop at the first request (which waits for the thread's, if it is not done). Not a
    daemon: an exit waits the few ms for it, as the interpreter's teardown under a thread
    still in OpenSSL crashes the process (SIGSEGV)."""
    threading.Thread(target=_make_verifying, name="ca-bundle").start()


def _make_verifying() -> None:
    # e.g. SSL_CERT_FILE names no file: the first request meets the error again, and says so
    with contextlib.suppress(Exception):
        verify_by_default()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 100,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self.ssl_context = ssl_context  # None: verify_by_default(), at the first request
        if ssl_context is None:
            load_verify_by_default_soon()
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY and NO_PROXY, honoured as by httpx's own transport (httpx ignores
        # them when it is handed one). Read once: aiohttp's trust_env reads and parses the
        # environment at every request, more CPU than the rest of the request.
        self._proxies = urllib.request.getproxies()
        # (scheme, host) -> (proxy URL, its Proxy-Authorization headers)
        self._proxy_for: dict[tuple[str, str], tuple[str | None, dict[str, str] | None]] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created at the first request: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            context = self.ssl_context or verify_by_default()
            connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=context,
                                             ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, as with its own transport
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _proxy(self, url: httpx.URL) -> tuple[str | None, dict[str, str] | None]:
        found = self._proxy_for.get((url.scheme, url.host))
        if found is None:
            proxy = self._proxies.get(url.scheme)
            if not proxy or urllib.request.proxy_bypass(url.host):
                found = (None, None)
            else:
                parsed = yarl.URL(proxy)
                headers = None
                if parsed.user:
                    user = f"{parsed.user}:{parsed.password or ''}".encode()
                    headers = {"Proxy-Authorization":
                               "Basic " + base64.b64encode(user).decode("ascii")}
                found = (str(parsed.with_user(None)), headers)
            self._proxy_for[url.scheme, url.host] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        proxy, proxy_headers = self._proxy(request.url)
        extensions = request.extensions
        if extensions.get(TOTAL_TIMEOUT) is None:
            timeout = extensions.get("timeout", {})
            timers = aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                           sock_connect=timeout.get("connect"),
                                           sock_read=timeout.get("read"))
        else:
            timers = _NO_TIMERS
        try:
            body = request.content
        except httpx.RequestNotRead:  # a streamed body
            body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, lower, v in request.headers._list if lower not in _SET_BY_AIOHTTP]
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                skip_auto_headers=_not_to_add(request.headers, body),
                data=body or None,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
                timeout=timers,
            ) as response:
                content = await response.read()
                received = list(response.raw_headers)
                status, reason = response.status, response.reason
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _httpx_error(exc, request) from exc
        answered = {"http_version": b"HTTP/1.1"}
        if reason:
            answered["reason_phrase"] = reason.encode()
        return httpx.Response(status, headers=httpx_direct.response_headers(received),
                              stream=httpx_direct.ReceivedBody(content), request=request,
                              extensions=answered)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _not_to_add(headers: httpx.Headers, body: bytes) -> list[str] | None:
    """The headers aiohttp would add to this request that httpx did not send; None (aiohttp's
    fast path) when the request has them all, as a client's requests do."""
    names = {lower for _, lower, _ in headers._list}
    skip = [name for lower, name in _ADDED_BY_AIOHTTP if lower not in names]
    if body and b"content-type" not in names:
        skip.append("Content-Type")
    return skip or None


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception that httpx's own transport would have raised."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, TimeoutError):  # aiohttp.ServerTimeoutError and socket reads included
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError |
                  aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.ClientOSError):  # reset by peer, broken pipe
        return httpx.ReadError(message, request=request)
    return httpx.NetworkError(message, request=request)

"""The agent's listening socket: HTTP, or HTTPS as the web config says.

When the TLS setup changes (a renewed certificate, another client CA, TLS turned on), a new
socket with the new settings is bound beside the old one (SO_REUSEPORT) before the old one
closes, so the agent never stops accepting connections; connections already open finish on
the old settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import web

from agent.web.auth import WebSecurity

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # seconds between two looks at the web config's files


class Listener:
    def __init__(self, runner: web.AppRunner, host: str, port: int,
                 security: WebSecurity) -> None:
        self.runner = runner
        self.host = host or None  # "" (":9877") = every interface
        self.port = port
        self.security = security
        self._site: web.TCPSite | None = None
        self._generation = security.tls_generation
        self._watcher: asyncio.Task | None = None

    @property
    def _reuse_port(self) -> bool:
        """Only a web config can change the TLS settings, and so need a second socket."""
        return self.security.path is not None

    @property
    def url(self) -> str:
        scheme = "https" if self.security.ssl_context is not None else "http"
        host = self.host or "0.0.0.0"
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        if self._reuse_port:
            _refuse_if_taken(self.host, self.port)
        self._site = await self._bind()
        if self.port == 0:  # the same port for every later socket
            self.port = next(addr[1] for addr in self.runner.addresses
                             if isinstance(addr, tuple))
        if self.security.path is not None:
            self._watcher = asyncio.create_task(self._watch(), name="web config watcher")

    async def _bind(self) -> web.TCPSite:
        site = web.TCPSite(self.runner, self.host, self.port,
                           ssl_context=self.security.ssl_context, reuse_port=self._reuse_port)
        await site.start()
        return site

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                self.security.refresh()
                await self.follow_tls_changes()
            except Exception:  # the watcher must outlive any surprise
                log.exception("watching the web configuration failed")

    async def follow_tls_changes(self) -> None:
        """Rebind with the current TLS settings if they changed since the socket was bound."""
        if self._generation == self.security.tls_generation:
            return
        self._generation = self.security.tls_generation
        try:
            site = await self._bind()
        except OSError as exc:
            log.error("could not listen with the new TLS settings, keeping the old ones: %s", exc)
            return
        old, self._site = self._site, site
        if old is not None:
            await old.stop()
        log.info("now serving %s with the new TLS settings", self.url)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher


def _refuse_if_taken(host: str | None, port: int) -> None:
    """SO_REUSEPORT would let the agent share a port another process listens on (a second
    agent, say): bind once without it first, so that fails as it would otherwise."""
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)

"""Who may call the agent's HTTP endpoints.

With a web config (``--web.config.file``, :mod:`agent.web.config`):

- ``basic_auth_users`` protects every endpoint, as in every exporter; with
  ``--web.read-without-auth`` the read-only ones (GET) stay open, e.g. for scrapes.
- Endpoints that change state (every method but GET/HEAD/OPTIONS, and routes marked with
  :func:`changes_state`) always need a credential: a basic-auth user, or a client certificate
  verified against ``client_ca_file``. A web config that offers neither refuses them (403).
  A route marked :func:`self_authenticating` checks its own single-use credential instead.
- ``http_server_config.headers`` are added to every response; ``rate_limit`` answers 429.

The file, and the TLS files it names, are re-read when they change (checked on every request
and every second by :class:`agent.web.listener.Listener`); an invalid new version is logged and
the previous one stays in force. Without a web config nothing is protected, which is why
the agent only listens on loopback then, unless told ``--web.allow-insecure``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bcrypt
from aiohttp import web

from agent.config.loader import ConfigError
from agent.web.config import WebConfig, load_web_config

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (or refuses) the rest
AUTH_CACHE_SIZE = 256
_CHANGES_STATE = "_channel_agent_changes_state"
_SELF_AUTHENTICATING = "_channel_agent_self_authenticating"
_SAN_KINDS = {"DNS", "IP Address", "email", "URI"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def changes_state(handler: Handler) -> Handler:
    """Mark a GET route that changes state (e.g. an OAuth callback): it needs credentials."""
    setattr(handler, _CHANGES_STATE, True)
    return handler


def self_authenticating(handler: Handler) -> Handler:
    """Mark a route whose request carries its own single-use credential, checked by the
    handler (the OAuth callback's link ``state``): basic auth would lock out the one who
    calls it, an account holder's browser."""
    setattr(handler, _SELF_AUTHENTICATING, True)
    return handler


def route_changes_state(request: web.Request) -> bool:
    return request.method not in SAFE_METHODS or bool(
        getattr(request.match_info.handler, _CHANGES_STATE, False)
    )


class WebSecurity:
    """The web config in force, re-read when a file it depends on changes."""

    def __init__(self, path: str | Path | None, *, read_without_auth: bool = False,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path) if path is not None else None
        self.read_without_auth = read_without_auth
        self.monotonic = monotonic
        self.config: WebConfig | None = load_web_config(self.path) if self.path else None
        self.tls_generation = 0  # bumped whenever the TLS setup changed; the listener follows
        self._signature = self._files_signature()
        self._tls_signature = self._tls_files_signature()
        self._auth_cache: OrderedDict[bytes, None] = OrderedDict()
        self._tokens = float("inf")  # capped to the burst at the first request
        self._tokens_at = monotonic()

    # --- reloading ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the web config if it or one of its TLS files changed since the last look."""
        if self.path is None:
            return
        signature = self._files_signature()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            new = load_web_config(self.path)
        except ConfigError as exc:
            log.error("the web configuration %s is invalid; the previous one stays in force "
                      "(%d problem(s))", self.path, len(exc.problems))
            for problem in exc.problems:
                log.error("web config problem: %s", problem)
            return
        self.config = new
        self._signature = self._files_signature()  # the new file may name other TLS files
        self._auth_cache.clear()
        # A TLS file rewritten in place (a renewed certificate) counts as a change too.
        tls_signature = self._tls_files_signature()
        if tls_signature != self._tls_signature:
            self._tls_signature = tls_signature
            self.tls_generation += 1
        log.info("web configuration %s reloaded", self.path)

    def _files_signature(self) -> tuple[Any, ...]:
        files = self.config.files if self.config else (self.path,) if self.path else ()
        return tuple(_stat(path) for path in files)

    def _tls_files_signature(self) -> tuple[Any, ...]:
        tls = self.config.tls if self.config else None
        return (tls, *(_stat(path) for path in (tls.files if tls else ())))

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.config.ssl_context if self.config else None

    # --- requests -----------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.refresh()
        config = self.config
        if config is not None:
            if config.rate_limit is not None and not self._take_token(config):
                raise web.HTTPTooManyRequests(text="Too Many Requests\n")
            await self._authorize(request, config)
        return await handler(request)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: every response, errors included, carries the configured headers."""
        if self.config is not None:
            response.headers.update(self.config.headers)

    async def _authorize(self, request: web.Request, config: WebConfig) -> None:
        if config.tls and config.tls.client_allowed_sans and not _san_allowed(request, config):
            raise web.HTTPForbidden(text="client certificate not allowed\n")
        if getattr(request.match_info.handler, _SELF_AUTHENTICATING, False):
            return
        writes = route_changes_state(request)
        if config.basic_auth_users:
            if not writes and self.read_without_auth:
                return
            if not await self._basic_auth_ok(request, config):
                raise web.HTTPUnauthorized(
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="channel-agent", charset="UTF-8"'},
                )
            return
        if not writes:
            return
        if config.tls and config.tls.verifies_clients and _peer_certificate(request):
            return
        raise web.HTTPForbidden(text=(
            "This endpoint changes state. The web configuration sets no way to authenticate: "
            "add basic_auth_users, or client_auth_type RequireAndVerifyClientCert with "
            "client_ca_file.\n"))

    async def _basic_auth_ok(self, request: web.Request, config: WebConfig) -> bool:
        user, password = _basic_credentials(request.headers.get("Authorization", ""))
        known = config.basic_auth_users.get(user) if user is not None else None
        hashed = known or config.dummy_hash
        key = hashlib.sha256(b"\0".join((hashed, (user or "").encode(), password))).digest()
        if known is not None and key in self._auth_cache:
            self._auth_cache.move_to_end(key)
            return True
        # Unknown users are checked against a dummy hash of the same cost: as slow as known ones.
        ok = await asyncio.to_thread(_checkpw, password, hashed)
        if not (ok and known is not None):
            return False
        self._auth_cache[key] = None
        if len(self._auth_cache) > AUTH_CACHE_SIZE:
            self._auth_cache.popitem(last=False)
        return True

    def _take_token(self, config: WebConfig) -> bool:
        """Token bucket: ``burst`` requests at once, then one per ``interval``."""
        limit = config.rate_limit
        assert limit is not None
        now = self.monotonic()
        self._tokens = min(float(limit.burst),
                           self._tokens + (now - self._tokens_at) / limit.interval)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _checkpw(password: bytes, hashed: bytes) -> bool:
    too_long = len(password) > BCRYPT_MAX_PASSWORD
    try:
        ok = bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
    except ValueError:  # a hash bcrypt cannot read; the web config loader refuses those
        return False
    return ok and not too_long


def _basic_credentials(header: str) -> tuple[str | None, bytes]:
    """(user, password) from an ``Authorization: Basic`` header; (None, b"") when absent."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, b""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, b""
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None, b""
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None, password


def _peer_certificate(request: web.Request) -> dict[str, Any] | None:
    """The client's certificate, when the TLS handshake verified one."""
    transport = request.transport
    return transport.get_extra_info("peercert") if transport is not None else None


def _san_allowed(request: web.Request, config: WebConfig) -> bool:
    certificate = _peer_certificate(request) or {}
    names = {_normal_san(value) for kind, value in certificate.get("subjectAltName", ())
             if kind in _SAN_KINDS}
    assert config.tls is not None
    return bool(names & {_normal_san(name) for name in config.tls.client_allowed_sans})


def _normal_san(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP; an empty host means every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_listen_problem(host: str, security: WebSecurity, allow_insecure: bool) -> str | None:
    """Why the agent must not listen on ``host``, or None when it may."""
    if security.config is not None or is_loopback(host) or allow_insecure:
        return None
    where = host or "every interface"
    return (f"refusing to listen on {where} without a web configuration: anyone who can reach "
            f"it could trigger checks and reloads. Give --web.config.file (basic_auth_users "
            f"and/or TLS client certificates), listen on 127.0.0.1, or pass "
            f"--web.allow-insecure if something in front of the agent protects it.")

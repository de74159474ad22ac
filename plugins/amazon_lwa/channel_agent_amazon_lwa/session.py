"""Access tokens between checks, and one check's use of Login with Amazon.

:class:`LwaTokens` belongs to a channel: the access token cached per account (reused until
``refresh_interval`` or its last minutes) and the refresh tokens Amazon rotated that could not
be stored yet (the credential itself: they win over the stale stored one).
:class:`LwaSession` is one check (or one reconnect verification): it refreshes or reuses the
access token, adopts a rotated refresh token before using the grant, sends through
``ctx.send``, and retries a 401 once with a fresh token (one 401 is not proof).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from agent.channel import Account, CheckContext, Secret, TransientError
from agent.redact import redact
from channel_agent_amazon_lwa import grants
from channel_agent_amazon_lwa.classify import ProviderError, transient

log = logging.getLogger(__name__)

T = TypeVar("T")

# An access token is not reused during its last minutes, so a check never races its expiry.
REUSE_MARGIN = 300.0


@dataclass(frozen=True)
class CachedToken:
    access_token: Secret
    refresh_fingerprint: str  # of the refresh token that obtained it
    refreshed_at: float  # monotonic
    expires_at: float  # monotonic
    issued_wall: float
    expires_wall: float


class TokenFailed(ProviderError):
    """The token refresh failed: the whole account's check ends, whichever call needed it."""


class LwaTokens:
    """A channel's access-token cache and not-yet-stored rotated refresh tokens."""

    def __init__(self) -> None:
        self.cached: dict[str, CachedToken] = {}
        # account -> (fingerprint of the token it replaced, new refresh token)
        self.rotated: dict[str, tuple[str, Secret]] = {}

    def refresh_token(self, account: Account, option: str = "refresh_token") -> Secret:
        """The account's refresh token: a rotated one not stored yet, else the stored one
        (:class:`agent.channel.MissingSecret` when that is absent)."""
        stored = account.settings[option].read()
        rotated = self.rotated.get(account.name)
        if rotated is not None:
            replaced_fingerprint, new = rotated
            if stored.fingerprint() == replaced_fingerprint:
                return new
            del self.rotated[account.name]  # persisted, or reconnected meanwhile
        return stored

    def carry_over(self, previous: LwaTokens, same_client: bool, names: Iterable[str]) -> None:
        """Take over ``previous``'s state on a reload; cached access tokens only when the
        client and hosts are unchanged, and only of accounts still configured."""
        self.rotated.update(previous.rotated)
        if same_client:
            keep = set(names)
            self.cached.update({n: t for n, t in previous.cached.items() if n in keep})


class LwaSession:
    """One check's Login with Amazon side, for one account."""

    def __init__(self, tokens: LwaTokens, account: Account, ctx: CheckContext,
                 refresh_token: Secret, settings: dict[str, Any], token_url: str,
                 channel_name: str) -> None:
        self.tokens = tokens
        self.account = account
        self.ctx = ctx
        self.refresh_token = refresh_token
        self.client_id: str = settings["client_id"]
        self.client_secret: Secret = settings["client_secret"]
        self.refresh_interval = float(settings["refresh_interval"])
        self.token_url = token_url
        self.channel_name = channel_name
        self.token: CachedToken | None = None
        self.client_valid: bool | None = None
        self.secrets = {self.client_secret.reveal(), refresh_token.reveal()}

    async def call(self, endpoint: str, build: Callable[[Secret], httpx.Request],
                   parse: Callable[[httpx.Response], T],
                   retry_on: frozenset[int] = frozenset({401})) -> T:
        """An API call with this account's access token; an answer with a status in
        ``retry_on`` is retried once with a freshly refreshed token before ``parse`` sees it."""
        token = await self.access_token()
        response = await self.send(endpoint, lambda: build(token))
        if response.status_code in retry_on:
            token = await self.access_token(force=True)
            response = await self.send(endpoint, lambda: build(token))
        return parse(response)

    async def send(self, endpoint: str, factory: Callable[[], httpx.Request]) -> httpx.Response:
        try:
            return await self.ctx.send(factory, endpoint=endpoint)
        except TransientError as exc:
            raise ProviderError(transient(exc.reason), exc.detail) from None

    async def access_token(self, force: bool = False) -> Secret:
        cached = self.tokens.cached.get(self.account.name)
        if not force and cached is not None and self._reusable(cached):
            self.token = cached
            self.secrets.add(cached.access_token.reveal())
            return cached.access_token
        return await self._refresh()

    def _reusable(self, cached: CachedToken) -> bool:
        now = self.ctx.retry.monotonic()
        return (
            cached.refresh_fingerprint == self.refresh_token.fingerprint()
            and now < cached.expires_at - REUSE_MARGIN
            and now - cached.refreshed_at < self.refresh_interval
        )

    async def _refresh(self) -> Secret:
        try:
            response = await self.send("token", lambda: grants.refresh_request(
                self.ctx.http, self.token_url, self.client_id, self.client_secret,
                self.refresh_token))
            grant = grants.parse_refresh_response(response)
        except ProviderError as err:
            if err.verdict.valid is False:
                self.tokens.cached.pop(self.account.name, None)
            raise TokenFailed(err.verdict, err.detail) from None
        self.client_valid = True
        self.secrets.add(grant.access_token.reveal())
        if grant.refresh_token is not None and grant.refresh_token != self.refresh_token:
            self._adopt_refresh_token(grant.refresh_token)
        now, wall = self.ctx.retry.monotonic(), self.ctx.clock()
        self.token = CachedToken(
            access_token=grant.access_token,
            refresh_fingerprint=self.refresh_token.fingerprint(),
            refreshed_at=now,
            expires_at=now + grant.expires_in,
            issued_wall=wall,
            expires_wall=wall + grant.expires_in,
        )
        self.tokens.cached[self.account.name] = self.token
        return grant.access_token

    def _adopt_refresh_token(self, new: Secret) -> None:
        """Store a rotated refresh token before anything else uses the grant."""
        self.secrets.add(new.reveal())
        name, fingerprint = self.account.name, new.fingerprint()
        self.tokens.rotated[name] = (self.refresh_token.fingerprint(), new)
        persist = self.ctx.persist_refresh_token
        if persist is None:
            log.warning(
                "%s account %s: Amazon returned a new refresh token (fingerprint %s) "
                "and nothing can persist it: kept in memory only, reconnect if the agent stops",
                self.channel_name, name, fingerprint)
        else:
            try:
                persist(self.account, new)
            except Exception as exc:  # losing the new token would be worse than going on
                log.error(
                    "%s account %s: storing the new refresh token (fingerprint %s) "
                    "failed, kept in memory only: %s",
                    self.channel_name, name, fingerprint,
                    self.scrub(f"{type(exc).__name__}: {exc}"))
        self.refresh_token = new

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    def result_fields(self) -> dict[str, Any]:
        """The CheckResult fields this session learnt: refresh-token fingerprint, client
        validity, the access token's issue and expiry."""
        fields: dict[str, Any] = {"refresh_token_fingerprint": self.refresh_token.fingerprint(),
                                  "client_valid": self.client_valid}
        if self.token is not None:
            fields["access_token_issued_at"] = self.token.issued_wall
            fields["access_token_expires_at"] = self.token.expires_wall
        return fields

"""One check of one Shopify account (see :mod:`channel_agent_shopify.channel`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from agent.channel import (
    Account,
    CheckContext,
    CheckResult,
    MissingSecret,
    Secret,
    SecretRef,
    TransientError,
)
from agent.checks.verdict import ProviderError, conclusive, transient
from agent.redact import redact
from channel_agent_shopify import shopify_api

if TYPE_CHECKING:
    from channel_agent_shopify.channel import ShopifyChannel

log = logging.getLogger(__name__)
T = TypeVar("T")
REUSE_MARGIN = 300.0  # an owned access token is not used in its last minutes


@dataclass(frozen=True)
class CachedToken:
    access_token: Secret
    refresh_fingerprint: str  # of the refresh token that obtained it
    expires_at: float  # monotonic
    issued_wall: float
    expires_wall: float


class ShopifyCheck:
    def __init__(self, channel: ShopifyChannel, account: Account, ctx: CheckContext) -> None:
        self.channel = channel
        self.account = account
        self.ctx = ctx
        settings = account.settings
        self.expiring = settings.get("token_type") == "expiring"
        # a secret-store reference that says who owns the token (the secret stores' owner /
        # observer rule) wins over the account's own setting
        mode = getattr(settings.get("refresh_token"), "mode", None) or settings.get("ownership")
        self.owner = self.expiring and mode == "owner"
        self.base = channel.admin_base(account)
        self.version = channel.versions.configured
        self.secrets: set[str] = set()
        self.token: CachedToken | None = None
        self.client_valid: bool | None = None
        # the long-lived credential: the refresh token of an expiring token, else the access
        # token itself (raises MissingSecret, which the channel turns into missing_credential)
        self.refresh_token: Secret | None = None
        if self.expiring:
            ref = settings.get("refresh_token")
            if isinstance(ref, SecretRef):
                self.refresh_token = self._read_refresh_token(ref)
            elif self.owner:
                raise MissingSecret(f"account {account.name}",
                                    "ownership owner needs the refresh_token")
        self.access_token: Secret | None = None
        if not self.owner:
            self.access_token = self._read(settings["access_token"])

    def _read(self, ref: SecretRef) -> Secret:
        secret = ref.read()
        self.secrets.add(secret.reveal())
        return secret

    def _read_refresh_token(self, ref: SecretRef) -> Secret:
        stored = self._read(ref)
        rotated = self.channel._rotated.get(self.account.name)
        if rotated is not None:
            replaced, new = rotated
            if stored.fingerprint() == replaced:
                self.secrets.add(new.reveal())
                return new
            del self.channel._rotated[self.account.name]
        return stored

    async def run(self) -> CheckResult:
        scopes: dict[str, bool] = {}
        self.granted: set[str] | None = None
        try:
            granted = self.granted = await self._call(
                "access_scopes",
                lambda token: shopify_api.access_scopes_request(self.ctx.http, self.base, token),
                shopify_api.parse_access_scopes)
            required = list(self.account.settings.get("required_scopes") or [])
            missing = shopify_api.missing_scopes(required, granted)
            scopes = {scope: scope not in missing for scope in required} if required \
                else dict.fromkeys(sorted(granted), True)
            await self._call("shop", lambda token: shopify_api.shop_request(
                self.ctx.http, self.base, self.version, token), shopify_api.parse_shop)
            if missing:
                raise ProviderError(conclusive("scope_missing"),
                                    f"access_scopes: {', '.join(missing)} not granted")
        except ProviderError as err:
            return self._result(scopes, err)
        return self._result(scopes, None)

    async def _call(self, endpoint: str, build: Callable[[Secret], httpx.Request],
                    parse: Callable[[httpx.Response], T]) -> T:
        token = await self._access_token()
        response = await self._send(endpoint, lambda: build(token))
        if response.status_code == 401:
            # One 401 is not proof: refresh (owner), re-read the store (observer), or ask
            # again (a gateway hiccup), once.
            token = await self._access_token(after_401=True)
            response = await self._send(endpoint, lambda: build(token))
        self.channel.versions.saw(response.headers.get(shopify_api.VERSION_HEADER)
                                  if endpoint == "shop" else None,
                                  response.headers.get(shopify_api.DEPRECATED_HEADER))
        return parse(response)

    async def _send(self, endpoint: str, factory: Callable[[], httpx.Request]) -> httpx.Response:
        try:
            return await self.ctx.send(factory, endpoint=endpoint)
        except TransientError as exc:
            raise ProviderError(transient(exc.reason), exc.detail) from None

    async def _access_token(self, after_401: bool = False) -> Secret:
        if not self.owner:
            if after_401:
                self.access_token = self._read(self.account.settings["access_token"])
            assert self.access_token is not None
            return self.access_token
        cached = self.channel._tokens.get(self.account.name)
        assert self.refresh_token is not None
        if (not after_401 and cached is not None
                and cached.refresh_fingerprint == self.refresh_token.fingerprint()
                and self.ctx.retry.monotonic() < cached.expires_at - REUSE_MARGIN):
            self.token = cached
            self.secrets.add(cached.access_token.reveal())
            return cached.access_token
        return await self._refresh()

    async def _refresh(self) -> Secret:
        settings = self.channel.settings
        client_secret = settings.get("client_secret")
        if not settings.get("client_id") or client_secret is None:
            raise ProviderError(conclusive("invalid_client", client_valid=False),
                                "ownership owner needs the channel's client_id and "
                                "client_secret to refresh")
        self.secrets.add(client_secret.reveal())
        assert self.refresh_token is not None
        form = shopify_api.refresh_form(settings["client_id"], client_secret,
                                        self.refresh_token)
        try:
            response = await self._send("token", lambda: shopify_api.token_request(
                self.ctx.http, self.base, form))
            grant = shopify_api.parse_token_response(response)
        except ProviderError as err:
            if err.verdict.valid is False:
                self.channel._tokens.pop(self.account.name, None)
            if err.verdict.client_valid is not None:
                self.client_valid = err.verdict.client_valid
            raise
        self.client_valid = True
        self.secrets.add(grant.access_token.reveal())
        if grant.refresh_token is not None and grant.refresh_token != self.refresh_token:
            self._adopt(grant.refresh_token)
        lifetime = grant.expires_in or 3600.0
        now, wall = self.ctx.retry.monotonic(), self.ctx.clock()
        self.token = CachedToken(grant.access_token, self.refresh_token.fingerprint(),
                                 now + lifetime, wall, wall + lifetime)
        self.channel._tokens[self.account.name] = self.token
        return grant.access_token

    def _adopt(self, new: Secret) -> None:
        """Keep the rotated refresh token before anything else: the old one is spent."""
        assert self.refresh_token is not None
        self.secrets.add(new.reveal())
        name = self.account.name
        self.channel._rotated[name] = (self.refresh_token.fingerprint(), new)
        persist = self.ctx.persist_refresh_token
        if persist is None:
            log.warning("shopify account %s: the rotated refresh token (fingerprint %s) cannot "
                        "be stored: kept in memory only", name, new.fingerprint())
        else:
            try:
                persist(self.account, new)
            except Exception as exc:  # losing the new token would be worse than going on
                log.error("shopify account %s: storing the rotated refresh token (fingerprint "
                          "%s) failed, kept in memory only: %s", name, new.fingerprint(),
                          redact(f"{type(exc).__name__}: {exc}", self.secrets))
        self.refresh_token = new

    def _result(self, scopes: dict[str, bool], problem: ProviderError | None) -> CheckResult:
        long_lived = self.refresh_token if self.expiring else self.access_token
        fields: dict[str, Any] = {
            "targets": scopes,
            "targets_reached": len(self.granted) if self.granted is not None else None,
            "refresh_token_fingerprint": long_lived.fingerprint() if long_lived else None,
            "client_valid": self.client_valid,
        }
        if self.token is not None:
            fields["access_token_issued_at"] = self.token.issued_wall
            fields["access_token_expires_at"] = self.token.expires_wall
        if problem is None:
            return CheckResult(valid=True, **fields)
        detail = redact(problem.detail, self.secrets)
        if problem.verdict.reason == "unauthorized" and self.expiring and not self.owner:
            detail += ("; an expiring access token lives 60 minutes: if the platform stopped "
                       "refreshing it, its refresh token may still work")
        return CheckResult(valid=problem.verdict.valid, reason=problem.verdict.reason,
                           detail=detail, **fields)

"""The Shopify channel: checks the offline access token an app holds for a merchant's shop.

One check: the access token (read from its store, or, for an expiring token the agent owns,
refreshed from the refresh token), then ``GET /admin/oauth/access_scopes.json`` (the granted
scopes, compared with ``required_scopes``) and ``GET /admin/api/<version>/shop.json`` (the
shop, and the API version headers). Answers are classified in
:mod:`channel_agent_shopify.classify`; the token model in docs: README "Shopify".

Two offline token models (shopify.dev/docs/apps/build/authentication-authorization/
access-tokens/offline-access-tokens):

- ``non_expiring``: the access token works until the app is uninstalled or the token revoked.
  Public apps must stop using them: Shopify rejects them from 2027-01-01
  (``non_expiring_tokens_end``; custom and merchant-created apps are exempt: set it empty).
- ``expiring`` (since December 2025): a 60-minute access token and a refresh token valid 90
  days, replaced at every refresh (``refresh_token_max_age``). Whoever refreshes consumes the
  refresh token, so with ``ownership: observer`` (default) the agent never refreshes: it
  checks with the access token the platform keeps current in the store and reads the refresh
  token only to notice its rotation (its fingerprint); a rotation that stops shows as a refresh
  token nearing its expiry. With ``ownership: owner`` the agent refreshes, and stores the
  rotated refresh token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import httpx
from prometheus_client.core import Metric

from agent.channel import (
    Account,
    ApplicationClient,
    Channel,
    CheckContext,
    CheckResult,
    Demo,
    MissingSecret,
    Reconnector,
    RefreshTokens,
    SecretRef,
)
from agent.redact import redact
from channel_agent_shopify import shopify_api
from channel_agent_shopify.check import ShopifyCheck
from channel_agent_shopify.classify import REASONS
from channel_agent_shopify.settings import (
    DEFAULT_API_VERSION,
    ShopifyAccountSettings,
    ShopifySettings,
    parse_date,
)
from channel_agent_shopify.versions import VersionHealth, retirement_of

log = logging.getLogger(__name__)

class ShopifyChannel(Channel):
    name = "shopify"
    title = "Shopify"
    target_kind = "scope"
    # the account's long-lived credential: the access token itself (non_expiring, the default;
    # named in messages) or the refresh token (expiring): see refresh_token_ref()
    refresh_tokens = RefreshTokens(option="access_token",
                                   max_age_setting="refresh_token_max_age")
    # owner mode refreshes with the app's client id/secret: invalid_client is the app's
    application_client = ApplicationClient()
    reasons = REASONS
    request_endpoints: ClassVar[tuple[str, ...]] = ("access_scopes", "shop", "token")

    Settings = ShopifySettings
    AccountSettings = ShopifyAccountSettings

    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        super().__init__(settings, accounts)
        self._by_name = {account.name: account for account in accounts}
        self._tokens: dict[str, Any] = {}  # owner mode: account -> cached access token
        self._rotated: dict[str, Any] = {}  # owner mode: rotated refresh token not yet stored
        version = str(settings.get("api_version") or DEFAULT_API_VERSION)
        override = settings.get("api_version_retirement") or ""
        self.versions = VersionHealth(
            self.name, version,
            retirement_of(version, int(settings.get("api_version_support_months") or 12),
                          parse_date(override) if override else None),
            float(settings.get("api_version_warning") or 0))
        end = settings.get("non_expiring_tokens_end") or ""
        self.non_expiring_end: float | None = parse_date(end) if end else None

    @classmethod
    def demo(cls) -> Demo | None:
        from channel_agent_shopify.demo import ShopifyDemo

        return ShopifyDemo()

    def reconnector(self) -> Reconnector | None:
        from channel_agent_shopify.reconnect import ShopifyReconnector

        return ShopifyReconnector(self)

    def carry_over(self, previous: Channel) -> None:
        if not isinstance(previous, ShopifyChannel):
            return
        self._rotated.update(previous._rotated)
        self.versions.take_over(previous.versions)
        names = set(self._by_name)
        self._tokens.update({n: t for n, t in previous._tokens.items() if n in names})

    def metrics(self) -> Iterable[Metric]:
        return self.versions.metrics()

    def backpressure(self, response: httpx.Response) -> float | None:
        """Shopify's REST bucket (``X-Shopify-Shop-Api-Call-Limit``) is per shop and app, and
        the platform's own sync draws from it: hold back while it is fuller than the
        threshold, for as long as the excess takes to drain."""
        limit = shopify_api.call_limit(response)
        if limit is None:
            return None
        used, size = limit
        excess = used - float(self.settings.get("call_limit_threshold", 0.5)) * size
        rate = float(self.settings.get("call_limit_leak_rate") or 2.0)
        return excess / rate if excess > 0 else None

    def refresh_token_ref(self, account: Account) -> SecretRef | None:
        option = "refresh_token" if account.settings.get("token_type") == "expiring" \
            else "access_token"
        ref = account.settings.get(option)
        return ref if isinstance(ref, SecretRef) else None

    def refresh_token_expiry(self, account: str, issued: float) -> float | None:
        found = self._by_name.get(account)
        if found is None:
            return None
        if found.settings.get("token_type") == "expiring":
            return super().refresh_token_expiry(account, issued)
        return self.non_expiring_end

    def admin_base(self, account: Account) -> str:
        own = account.settings.get("admin_url")
        if own:
            return str(own).rstrip("/")
        return shopify_api.admin_base(self.settings["endpoints"]["admin_url"],
                                      account.settings["shop"])

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            check = ShopifyCheck(self, account, ctx)
        except MissingSecret as exc:
            return CheckResult(valid=False, reason="missing_credential", detail=redact(str(exc)))
        return await check.run()

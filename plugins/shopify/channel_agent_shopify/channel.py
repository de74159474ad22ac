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

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from prometheus_client.core import Metric

from agent.channel import (
    RECONNECT_OPTIONS,
    Account,
    Channel,
    CheckContext,
    CheckResult,
    Demo,
    MissingSecret,
    Option,
    Reconnector,
    SecretRef,
)
from agent.checks.httpretry import RetryPolicy
from agent.redact import redact
from channel_agent_shopify import shopify_api
from channel_agent_shopify.check import ShopifyCheck
from channel_agent_shopify.classify import PERMISSION_REASONS, SHOP_REASONS
from channel_agent_shopify.versions import VersionHealth, retirement_of

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-10"
EXPIRING_REFRESH_LIFETIME = 90 * 86400  # shopify.dev offline-access-tokens: "90-day refresh"
NON_EXPIRING_END = "2027-01-01T00:00:00Z"  # public apps: non-expiring tokens rejected from


def date_problem(value: object) -> str | None:
    if value in ("", None):
        return None
    try:
        parse_date(str(value))
    except ValueError:
        return f"must be an ISO 8601 date or time with a zone (2027-01-01T00:00:00Z), not {value!r}"
    return None


def parse_date(value: str) -> float:
    """Unix time of ``2027-01-01`` (midnight UTC) or of a time with a zone."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        if len(value) > 10:
            raise ValueError("no time zone")
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class ShopifyChannel(Channel):
    name = "shopify"
    title = "Shopify"
    refresh_token_option = "access_token"  # non-expiring; expiring: refresh_token_ref()
    request_endpoints: ClassVar[tuple[str, ...]] = ("access_scopes", "shop", "token")
    extra_reasons: ClassVar[dict[str, str]] = {**SHOP_REASONS, **PERMISSION_REASONS}

    channel_options: ClassVar[dict[str, Option]] = {
        "client_id": Option("str", default="", doc="The app's client id (API key): reconnect "
                                                   "and owner-mode refreshes need it"),
        "client_secret": Option("secret", default=None, doc="The app's client secret: signs "
                                "the consent redirect (hmac); reconnect and refreshes need it"),
        "api_version": Option("str", default=DEFAULT_API_VERSION,
                              check=shopify_api.api_version_problem,
                              doc="Admin API version the platform's app calls (YYYY-MM)"),
        "api_version_support_months": Option(
            "int", default=12, doc="Months Shopify supports a stable version after its release "
                                   "(at least 12: shopify.dev/docs/api/usage/versioning)"),
        "api_version_retirement": Option(
            "str", default="", check=date_problem,
            doc="The configured version's announced retirement, overriding the computed one"),
        "api_version_warning": Option(
            "duration", default=90 * 86400.0,
            doc="Warn this long before the configured API version's retirement"),
        "refresh_token_max_age": Option(
            "duration", default=float(EXPIRING_REFRESH_LIFETIME),
            doc="Lifetime of an expiring token's refresh token after its last rotation (90d)"),
        "non_expiring_tokens_end": Option(
            "str", default=NON_EXPIRING_END, check=date_problem,
            doc="When Shopify stops accepting non-expiring offline tokens of this app (public "
                "apps: 2027-01-01); empty for custom or merchant-created apps (no end)"),
        "call_limit_threshold": Option(
            "float", default=0.5, doc="Hold back requests to a shop whose REST call-limit "
                                      "bucket is fuller than this share (it is shared with the "
                                      "platform's own calls)"),
        "call_limit_leak_rate": Option(
            "float", default=2.0, doc="Requests per second the bucket drains (2; Plus 20)"),
        "request_timeout": Option("duration", default=10, doc="Timeout of one HTTP request"),
        "endpoints": Option(
            "mapping",
            options={"admin_url": Option("str", default="https://{shop}")},
            doc="The shop's admin base URL, {shop} = its myshopify.com domain (a simulator)",
        ),
        "retry": Option(
            "mapping",
            options={"initial_backoff": Option("duration", default=2),
                     "max_backoff": Option("duration", default=30)},
            doc="Backoff on 429/5xx when Shopify sends no Retry-After.",
        ),
        **RECONNECT_OPTIONS,
    }
    account_options: ClassVar[dict[str, Option]] = {
        "shop": Option("str", required=True, check=shopify_api.shop_domain_problem,
                       doc="The shop's permanent domain, <name>.myshopify.com"),
        "access_token": Option("secret_ref", required=True, doc="The offline access token"),
        "required_scopes": Option("str_list", default=[],
                                  doc="Scopes the platform needs, e.g. [read_orders]"),
        "token_type": Option("str", default="non_expiring", choices=("non_expiring", "expiring"),
                             doc="Offline token model of this installation"),
        "refresh_token": Option("secret_ref", default=None,
                                doc="Expiring tokens: the refresh token (observer: read only "
                                    "for its rotation; owner: used and rotated)"),
        "ownership": Option("str", default="observer", choices=("observer", "owner"),
                            doc="Who refreshes an expiring token: the platform (observer) or "
                                "the agent (owner)"),
    }

    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        super().__init__(settings, accounts)
        self._by_name = {account.name: account for account in accounts}
        self._tokens: dict[str, Any] = {}  # owner mode: account -> cached access token
        self._rotated: dict[str, Any] = {}  # owner mode: rotated refresh token not yet stored
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.monotonic: Callable[[], float] = time.monotonic
        self.jitter = 0.1
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

    def retry_policy(self, ctx: CheckContext) -> RetryPolicy:
        retry = self.settings["retry"]
        return RetryPolicy(
            initial_backoff=float(retry["initial_backoff"]),
            max_backoff=float(retry["max_backoff"]),
            request_timeout=float(self.settings["request_timeout"]),
            jitter=self.jitter, sleep=self.sleep, monotonic=self.monotonic, clock=ctx.clock)

    def admin_base(self, account: Account) -> str:
        return shopify_api.admin_base(self.settings["endpoints"]["admin_url"],
                                      account.settings["shop"])

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            check = ShopifyCheck(self, account, ctx)
        except MissingSecret as exc:
            return CheckResult(valid=False, reason="missing_credential", detail=redact(str(exc)))
        return await check.run()

"""Re-authorising an Amazon Ads account (``channel-agent reconnect amazon_ads``).

The consent page of the account's region with scope ``advertising::campaign_management`` and
PKCE (S256); the ``authorization_code`` grant at the regional token URL; then one refresh
with the new token and ``GET /v2/profiles`` to compare with ``expected_profiles``.

What the consent page's answers mean (shared/reference/amazon-ads-api.md §1): error=access_denied
is ``declined``, error=invalid_scope ``rejected`` (the app is not approved for the Ads API).
The code exchange and the new token's first use: :mod:`channel_agent_amazon_lwa.consent`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from channel_agent_amazon_lwa.classify import ProviderError
from channel_agent_amazon_lwa.consent import exchange_code, first_use_error

from agent.channel import (
    Account,
    CheckContext,
    ReconnectError,
    Reconnector,
    Secret,
    TargetInfo,
    VerifyResult,
)

SCOPE = "advertising::campaign_management"
# (account, context, new refresh token) -> (profiles it reaches, the refresh token to keep)
FirstUse = Callable[[Account, CheckContext, Secret],
                    Awaitable[tuple[list[dict[str, Any]], Secret]]]


class AmazonAdsReconnector(Reconnector):
    after_reconnect_note = (
        "Advertising data can take several hours to catch up after a reconnect: Amazon reports "
        "impressions and clicks within about 12 hours and conversions within 24, and reports "
        "themselves can take up to 3 hours to generate."
    )

    def __init__(self, settings: dict[str, Any], first_use: FirstUse) -> None:
        """The channel's ``settings`` and its first use of a new token
        (AmazonAdsChannel.first_use)."""
        self.settings = settings
        self.first_use = first_use
        self.client_id: str = settings["client_id"]
        self.client_secret: Secret = settings["client_secret"]

    def consent_url(self, account: Account, state: str, code_challenge: str,
                    redirect_uri: str) -> str:
        base = self.settings["endpoints"]["authorize_url"][account.region]
        query = {
            "client_id": self.client_id,
            "scope": SCOPE,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"

    def redirect_error(self, error: str, description: str) -> ReconnectError:
        if error == "access_denied":
            return ReconnectError(
                "declined", "the consent was declined on Amazon's page (access_denied)")
        if error == "invalid_scope":
            return ReconnectError(
                "rejected", f"Amazon refused the scope {SCOPE} (invalid_scope): the app is not "
                            f"approved for the Amazon Ads API")
        return super().redirect_error(error, description)

    async def exchange(self, account: Account, code: str, code_verifier: str,
                       redirect_uri: str, ctx: CheckContext) -> Secret:
        token_url = self.settings["endpoints"]["token_url"][account.region]
        return await exchange_code(ctx, token_url, self.client_id, self.client_secret, code,
                                   code_verifier, redirect_uri)

    async def verify(self, account: Account, refresh_token: Secret,
                     ctx: CheckContext) -> VerifyResult:
        # The caller stores whatever token comes out of this (a rotated one included).
        ctx = dataclasses.replace(ctx, persist_refresh_token=lambda account, secret: None)
        try:
            items, refresh_token = await self.first_use(account, ctx, refresh_token)
        except ProviderError as err:
            raise first_use_error(err) from None
        profiles = [_profile(item) for item in items]
        seen = {profile.id for profile in profiles}
        expected = [str(p) for p in account.settings.get("expected_profiles") or []]
        return VerifyResult(refresh_token=refresh_token, targets=profiles,
                            missing=[p for p in expected if p not in seen], expected=expected)


def _profile(item: dict[str, Any]) -> TargetInfo:
    info = item.get("accountInfo") if isinstance(item.get("accountInfo"), dict) else {}
    return TargetInfo(
        id=str(item["profileId"]),
        name=str(info.get("name") or ""),
        country=str(item.get("countryCode") or ""),
        kind=str(info.get("type") or ""),
    )

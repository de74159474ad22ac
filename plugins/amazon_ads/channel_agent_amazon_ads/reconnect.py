"""Re-authorising an Amazon Ads account (``channel-agent reconnect amazon_ads``).

The consent page of the account's region with scope ``advertising::campaign_management`` and
PKCE (S256); the ``authorization_code`` grant at the regional token URL; then one refresh
with the new token and ``GET /v2/profiles`` to compare with ``expected_profiles``.

What the answers mean for the reconnect (shared/reference/amazon-ads-api.md §1):

    where                 answer                                  reason
    --------------------  --------------------------------------  ---------------
    consent redirect      error=access_denied                     declined
    consent redirect      error=invalid_scope                     rejected (app not approved)
    code exchange         invalid_grant mentioning code           code_rejected (expired/reused)
    code exchange         invalid_grant mentioning redirect_uri   rejected
                          or code_verifier
    code exchange         invalid_client                          rejected (client id/secret)
    code exchange/verify  429, 5xx, timeout, garbage              unavailable (try again)
    verify                a conclusive refusal of the new token   rejected
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx

from agent.channel import (
    Account,
    CheckContext,
    ProfileInfo,
    ReconnectError,
    Reconnector,
    Secret,
    VerifyResult,
)
from agent.checks.httpretry import RetryPolicy, TransientError, send_with_retries
from channel_agent_amazon_ads import lwa
from channel_agent_amazon_ads.classify import ProviderError, describe, lwa_verdict, parse_json

SCOPE = "advertising::campaign_management"
# (account, context, new refresh token) -> (profiles it reaches, the refresh token to keep)
FirstUse = Callable[[Account, CheckContext, Secret],
                    Awaitable[tuple[list[dict[str, Any]], Secret]]]
AGAIN = "nothing was stored; run the reconnect again"


class AmazonAdsReconnector(Reconnector):
    after_reconnect_note = (
        "Advertising data can take several hours to catch up after a reconnect: Amazon reports "
        "impressions and clicks within about 12 hours and conversions within 24, and reports "
        "themselves can take up to 3 hours to generate."
    )

    def __init__(self, settings: dict[str, Any],
                 retry_policy: Callable[[CheckContext], RetryPolicy],
                 first_use: FirstUse) -> None:
        """The channel's ``settings``, its retry policy for one check context, and its
        first use of a new token (AmazonAdsChannel.first_use)."""
        self.settings = settings
        self.retry_policy = retry_policy
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
        try:
            response = await send_with_retries(
                ctx.http,
                lambda: lwa.code_request(ctx.http, token_url, self.client_id, self.client_secret,
                                         code, code_verifier, redirect_uri),
                deadline=ctx.deadline,
                endpoint="token",
                record=ctx.record_request,
                policy=self.retry_policy(ctx),
            )
        except TransientError as exc:
            raise ReconnectError(
                "unavailable", f"Amazon did not answer the code exchange ({exc.detail}); "
                               f"{AGAIN}") from None
        if not response.is_success:
            raise exchange_error(response)
        try:
            grant = lwa.parse_refresh_response(response)
        except ProviderError as err:
            raise ReconnectError("unavailable", f"{err.detail}; {AGAIN}") from None
        if grant.refresh_token is None:
            raise ReconnectError("unavailable",
                                 f"the code exchange answered without a refresh token; {AGAIN}")
        return grant.refresh_token

    async def verify(self, account: Account, refresh_token: Secret,
                     ctx: CheckContext) -> VerifyResult:
        # The caller stores whatever token comes out of this (a rotated one included).
        ctx = dataclasses.replace(ctx, persist_refresh_token=lambda account, secret: None)
        try:
            items, refresh_token = await self.first_use(account, ctx, refresh_token)
        except ProviderError as err:
            detail = err.detail
            if err.verdict.valid is None:
                raise ReconnectError(
                    "unavailable", f"Amazon did not answer while verifying the new token "
                                   f"({detail}); {AGAIN}") from None
            raise ReconnectError(
                "rejected", f"Amazon refused the new token at its first use ({detail}); "
                            f"nothing was stored") from None
        profiles = [_profile(item) for item in items]
        seen = {profile.id for profile in profiles}
        expected = [str(p) for p in account.settings.get("expected_profiles") or []]
        return VerifyResult(refresh_token=refresh_token, profiles=profiles,
                            missing=[p for p in expected if p not in seen])


def exchange_error(response: httpx.Response) -> ReconnectError:
    """What a failed authorization-code exchange means."""
    body = parse_json(response)
    verdict = lwa_verdict(response.status_code, body)
    detail = describe("token", response, body)
    if verdict.valid is None:
        return ReconnectError("unavailable", f"Amazon did not complete the code exchange "
                                             f"({detail}); {AGAIN}")
    description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
    if verdict.reason == "invalid_grant":
        if "code_verifier" in description:
            return ReconnectError("rejected", f"Amazon rejected the PKCE code verifier: the code "
                                              f"belongs to another attempt ({detail}); {AGAIN}")
        if "redirect_uri" in description:
            return ReconnectError("rejected", f"the redirect_uri differs from the one the consent "
                                              f"was asked with ({detail}); {AGAIN}")
        return ReconnectError("code_rejected", f"the authorisation code expired (codes live 5 "
                                               f"minutes) or was already used ({detail}); {AGAIN}")
    if verdict.reason == "invalid_client":
        return ReconnectError("rejected", f"Amazon rejected the app's client id or secret "
                                          f"({detail}): fix client_secret first, every account of "
                                          f"this app is affected")
    return ReconnectError("rejected", f"Amazon refused the code exchange ({detail}); {AGAIN}")


def _profile(item: dict[str, Any]) -> ProfileInfo:
    info = item.get("accountInfo") if isinstance(item.get("accountInfo"), dict) else {}
    return ProfileInfo(
        id=str(item["profileId"]),
        name=str(info.get("name") or ""),
        country=str(item.get("countryCode") or ""),
        kind=str(info.get("type") or ""),
    )

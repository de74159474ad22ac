"""The Amazon Ads channel: checks an advertiser's Login with Amazon refresh token.

One check: exchange the refresh token for an access token (or reuse a cached one; both in
:mod:`channel_agent_amazon_lwa.session`), list the profiles the consent covers, and optionally
probe each expected profile with the cheapest campaign call of an ad product the account uses.
What each answer means is decided in :mod:`channel_agent_amazon_ads.classify`.

Probes that say nothing about the credential are not made, or not held against it:

- agency profiles (``accountInfo.type: agency``) are not probed: campaign calls on them answer
  400 "Advertiser ID cannot be decrypted" (airbytehq/airbyte issue #6240), and that answer from
  any profile means "probe not applicable", never a transient failure forever;
- the campaign probe is a Sponsored Products call, made only for accounts whose ``ad_products``
  include ``sponsored_products``; a 403 naming an ad product ("Advertiser is not authorized
  for Sponsored Display", airbytehq/airbyte PR #5023) is ``ad_product_unauthorized`` (a
  permission fact about that product), not ``forbidden``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from channel_agent_amazon_lwa.channel import LwaChannel
from channel_agent_amazon_lwa.classify import ProviderError, Verdict, conclusive
from channel_agent_amazon_lwa.session import LwaSession, TokenFailed

from agent.channel import (
    Account,
    CheckContext,
    CheckResult,
    Demo,
    MissingSecret,
    Reason,
    Reconnector,
    Secret,
)
from agent.reasons import PERMISSION
from agent.redact import redact
from channel_agent_amazon_ads import ads_api
from channel_agent_amazon_ads.reconnect import AmazonAdsReconnector
from channel_agent_amazon_ads.settings import AmazonAdsAccountSettings, AmazonAdsSettings

log = logging.getLogger(__name__)



class AmazonAdsChannel(LwaChannel):
    name = "amazon_ads"
    title = "Amazon Ads"
    target_kind = "profile"
    reasons = (
        Reason("profile_missing", PERMISSION,
               "an expected profile is not in /v2/profiles any more"),
        Reason("ad_product_unauthorized", PERMISSION,
               "the advertiser is not authorized for an ad product the account is expected "
               "to use (403 naming the product)"),
    )
    request_endpoints: ClassVar[tuple[str, ...]] = ("token", "profiles", "campaigns_list")

    Settings = AmazonAdsSettings
    AccountSettings = AmazonAdsAccountSettings

    @classmethod
    def demo(cls) -> Demo | None:
        from channel_agent_amazon_ads.demo import AmazonAdsDemo

        return AmazonAdsDemo()

    def reconnector(self) -> Reconnector:
        return AmazonAdsReconnector(self.settings, self.first_use)

    async def first_use(self, account: Account, ctx: CheckContext,
                        refresh_token: Secret) -> tuple[list[dict[str, Any]], Secret]:
        """Use ``refresh_token`` once (refresh, ``GET /v2/profiles``): the profiles it reaches
        and the refresh token to keep (Amazon may rotate it). ProviderError, its detail free
        of the token and the client secret, when Amazon refuses or does not answer."""
        check = _Check(self, account, self.session(account, ctx, refresh_token))
        try:
            return await check.list_profiles(), check.lwa.refresh_token
        except ProviderError as err:
            raise ProviderError(err.verdict, check.lwa.scrub(err.detail)) from None

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            refresh_token = self.tokens.refresh_token(account)
        except MissingSecret as exc:
            detail = redact(str(exc))
            return CheckResult(valid=False, reason="missing_credential", detail=detail)
        return await _Check(self, account, self.session(account, ctx, refresh_token)).run()


class _Check:
    """One check of one account."""

    def __init__(self, channel: AmazonAdsChannel, account: Account, lwa: LwaSession) -> None:
        self.channel = channel
        self.account = account
        self.lwa = lwa
        self.ctx = lwa.ctx
        self.client_id: str = channel.settings["client_id"]
        self.api_url: str = channel.settings["endpoints"]["api_url"][account.region]
        self.profiles: dict[str, bool] = {}
        self.reached: int | None = None

    async def run(self) -> CheckResult:
        try:
            problems = await self._check_profiles()
        except ProviderError as err:
            problems = [err]
        return self._result(problems)

    async def list_profiles(self) -> list[dict[str, Any]]:
        """``GET /v2/profiles`` with this account's token (refreshed when needed)."""
        return await self.lwa.call(
            "profiles",
            lambda token: ads_api.profiles_request(
                self.ctx.http, self.api_url, self.client_id, token
            ),
            ads_api.parse_profile_list,
        )

    async def _check_profiles(self) -> list[ProviderError]:
        listed = await self.list_profiles()
        seen = [profile["profileId"] for profile in listed]
        self.reached = len(seen)
        expected = list(self.account.settings.get("expected_profiles") or [])
        if not expected:
            self.profiles = {str(p): True for p in seen}
            return []
        present = set(seen)
        self.profiles = {str(p): p in present for p in expected}
        problems: list[ProviderError] = []
        missing = [p for p in expected if p not in present]
        if missing:
            text = ", ".join(map(str, missing))
            problems.append(ProviderError(conclusive("profile_missing"),
                                          f"profiles: {text} not in /v2/profiles"))
        if self._probe_enabled():
            agencies = {p["profileId"] for p in listed if ads_api.is_agency(p)}
            for profile_id in expected:
                if profile_id in present and profile_id not in agencies:
                    problem = await self._probe(profile_id)
                    if problem is not None:
                        problems.append(problem)
        return problems

    async def _probe(self, profile_id: int) -> ProviderError | None:
        try:
            await self.lwa.call(
                "campaigns_list",
                lambda token: ads_api.campaigns_probe_request(
                    self.ctx.http, self.api_url, self.client_id, token, profile_id
                ),
                ads_api.parse_campaigns_probe,
            )
        except ads_api.ProbeNotApplicable:
            return None
        except TokenFailed:
            raise
        except ProviderError as err:
            if err.verdict.valid is False:
                self.profiles[str(profile_id)] = False
            return ProviderError(err.verdict, f"profile {profile_id}: {err.detail}")
        return None

    def _probe_enabled(self) -> bool:
        override = self.account.settings.get("permission_probe")
        enabled = bool(self.channel.settings.get("permission_probe", True)
                       if override is None else override)
        products = self.account.settings.get("ad_products")
        if products is None:
            products = self.channel.settings.get("ad_products") or []
        # the probe is a Sponsored Products call: it says nothing about other products
        return enabled and ads_api.SPONSORED_PRODUCTS in products

    def _result(self, problems: list[ProviderError]) -> CheckResult:
        for problem in problems:
            if problem.verdict.agent_bug:
                log.error(
                    "amazon_ads account %s: Amazon rejected a request as malformed (%s); "
                    "this is most likely a bug in the agent",
                    self.account.name,
                    self.lwa.scrub(problem.detail),
                )
        fields: dict[str, Any] = {"targets": self.profiles, "targets_reached": self.reached,
                                  **self.lwa.result_fields()}
        decisive = [p for p in problems if p.verdict.valid is False] or problems
        if not decisive:
            return CheckResult(valid=True, **fields)
        verdict: Verdict = decisive[0].verdict
        if verdict.client_valid is not None:
            fields["client_valid"] = verdict.client_valid
        detail = self.lwa.scrub("; ".join(p.detail for p in decisive))
        return CheckResult(valid=verdict.valid, reason=verdict.reason, detail=detail, **fields)

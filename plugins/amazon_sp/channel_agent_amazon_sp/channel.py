"""The Amazon Selling Partner API channel: checks a seller's authorisation of the application.

One check: exchange the refresh token for an access token at Login with Amazon (or reuse a
cached one; :mod:`channel_agent_amazon_lwa`), then ``GET /sellers/v1/marketplaceParticipations``
on the account's regional host, at most once per ``participations_interval`` per account (the
operation allows about one call a minute). Expected marketplaces play the role Ads profiles
play: one missing is a permission loss. What each answer means:
:mod:`channel_agent_amazon_sp.sp_api`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from channel_agent_amazon_lwa.channel import LwaChannel
from channel_agent_amazon_lwa.classify import ProviderError, conclusive
from channel_agent_amazon_lwa.session import LwaSession

from agent.channel import (
    Account,
    Channel,
    CheckContext,
    CheckResult,
    Demo,
    MissingSecret,
    Reason,
    Reconnector,
)
from agent.reasons import PERMISSION
from agent.redact import redact
from channel_agent_amazon_sp import sp_api
from channel_agent_amazon_sp.settings import AmazonSpAccountSettings, AmazonSpSettings

log = logging.getLogger(__name__)



class AmazonSpChannel(LwaChannel):
    name = "amazon_sp"
    title = "Amazon Selling Partner API"
    target_kind = "marketplace"
    reasons = (
        Reason("marketplace_missing", PERMISSION,
               "an expected marketplace is not among the seller's participations any more"),
    )
    request_endpoints: ClassVar[tuple[str, ...]] = ("token", "participations")
    Settings = AmazonSpSettings
    AccountSettings = AmazonSpAccountSettings

    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        super().__init__(settings, accounts)
        # account -> (monotonic time of the last participations answer, what it said)
        self.participations: dict[str, tuple[float, list[sp_api.Participation]]] = {}

    @classmethod
    def demo(cls) -> Demo | None:
        from channel_agent_amazon_sp.demo import AmazonSpDemo

        return AmazonSpDemo()

    def reconnector(self) -> Reconnector:
        from channel_agent_amazon_sp.reconnect import AmazonSpReconnector

        return AmazonSpReconnector(self)

    def carry_over(self, previous: Channel) -> None:
        super().carry_over(previous)
        if isinstance(previous, AmazonSpChannel):
            names = {account.name for account in self.accounts}
            self.participations.update({n: p for n, p in previous.participations.items()
                                        if n in names})

    async def list_participations(self, session: LwaSession) -> list[sp_api.Participation]:
        """``getMarketplaceParticipations`` with the session's token (refreshed when needed)."""
        api_url = self.settings["endpoints"]["api_url"][session.account.region]
        found = await session.call(
            "participations",
            lambda token: sp_api.participations_request(session.ctx.http, api_url, token),
            sp_api.parse_participations, retry_on=sp_api.RETRY_WITH_FRESH_TOKEN)
        self.participations[session.account.name] = (session.ctx.retry.monotonic(), found)
        return found

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            refresh_token = self.tokens.refresh_token(account)
        except MissingSecret as exc:
            return CheckResult(valid=False, reason="missing_credential", detail=redact(str(exc)))
        session = self.session(account, ctx, refresh_token)
        try:
            found, note = await self._participations(session)
            problem = self._missing(account, found)
        except ProviderError as err:
            found, note, problem = None, "", err
        return self._result(account, session, found, note, problem)

    async def _participations(self, session: LwaSession,
                              ) -> tuple[list[sp_api.Participation], str]:
        """Fresh participations, or the last ones while the rate limit says wait (the token
        refresh alone then verifies the credential)."""
        last = self.participations.get(session.account.name)
        now = session.ctx.retry.monotonic()
        interval = float(self.settings["participations_interval"])
        if last is not None and now - last[0] < interval:
            await session.access_token()
            return last[1], "marketplaces as of the last participations call (rate limit)"
        return await self.list_participations(session), ""

    @staticmethod
    def _missing(account: Account, found: list[sp_api.Participation]) -> ProviderError | None:
        present = {p.marketplace_id for p in found}
        missing = [m for m in account.settings.get("expected_marketplaces") or []
                   if m not in present]
        if not missing:
            return None
        return ProviderError(conclusive("marketplace_missing"),
                             f"participations: {', '.join(missing)} not among the seller's "
                             f"marketplaces")

    def _result(self, account: Account, session: LwaSession,
                found: list[sp_api.Participation] | None, note: str,
                problem: ProviderError | None) -> CheckResult:
        fields = session.result_fields()
        if found is not None:
            expected = list(account.settings.get("expected_marketplaces") or [])
            present = {p.marketplace_id for p in found}
            fields["targets"] = ({m: m in present for m in expected} if expected
                                 else dict.fromkeys(sorted(present), True))
            fields["targets_reached"] = len(present)
        if problem is None:
            facts = [note] if note else []
            facts += [f"{p.marketplace_id}: not participating" for p in found or ()
                      if not p.participating]
            facts += [f"{p.marketplace_id}: has suspended listings" for p in found or ()
                      if p.suspended_listings]
            return CheckResult(valid=True, detail="; ".join(facts), **fields)
        verdict = problem.verdict
        if verdict.agent_bug:
            log.error("amazon_sp account %s: Amazon rejected a request as malformed (%s); "
                      "this is most likely a bug in the agent", account.name,
                      session.scrub(problem.detail))
        if verdict.client_valid is not None:
            fields["client_valid"] = verdict.client_valid
        detail = session.scrub(problem.detail)
        return CheckResult(valid=verdict.valid, reason=verdict.reason, detail=detail, **fields)

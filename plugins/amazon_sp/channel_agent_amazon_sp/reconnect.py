"""Re-authorising a seller (``channel-agent reconnect amazon_sp``): Seller Central's website
authorisation workflow, not the LwA ``/ap/oa`` page
(developer-docs.amazon.com/sp-api/docs/website-authorization-workflow).

The consent URL is ``<Seller Central>/apps/authorize/consent?application_id=…&state=…`` (plus
``version=beta`` while the application is a draft, and ``redirect_uri``); Seller Central sends
the browser back with ``spapi_oauth_code``, ``selling_partner_id`` and ``state``. The code is
exchanged at Login with Amazon (no PKCE: Seller Central does not take a code challenge) and the
new token is used once: a refresh, then ``getMarketplaceParticipations`` against the account's
``expected_marketplaces``. The LwA answers mean what :mod:`channel_agent_amazon_lwa.consent`
says.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING
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

if TYPE_CHECKING:
    from channel_agent_amazon_sp.channel import AmazonSpChannel


class AmazonSpReconnector(Reconnector):
    code_param = "spapi_oauth_code"
    after_reconnect_note = (
        "Seller data syncs with the next run of the sync pipeline; the authorisation lasts a "
        "year from today (Seller Central, Manage Your Apps, shows its expiry)."
    )

    def __init__(self, channel: AmazonSpChannel) -> None:
        self.channel = channel
        self.settings = channel.settings

    def consent_url(self, account: Account, state: str, code_challenge: str,
                    redirect_uri: str) -> str:
        application_id = self.settings.get("application_id") or ""
        if not application_id:
            raise ReconnectError("unsupported", "channels.amazon_sp.application_id is not set: "
                                                "the consent page needs the application's id")
        base = self.settings["endpoints"]["authorize_url"][account.region]
        query = {"application_id": application_id, "state": state,
                 "redirect_uri": redirect_uri}
        if self.settings.get("draft_app"):
            query["version"] = "beta"
        return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"

    async def exchange(self, account: Account, code: str, code_verifier: str,
                       redirect_uri: str, ctx: CheckContext) -> Secret:
        token_url = self.settings["endpoints"]["token_url"][account.region]
        return await exchange_code(ctx, token_url, self.settings["client_id"],
                                   self.settings["client_secret"], code, None, redirect_uri)

    async def verify(self, account: Account, refresh_token: Secret,
                     ctx: CheckContext) -> VerifyResult:
        # The caller stores whatever token comes out of this (a rotated one included).
        ctx = dataclasses.replace(ctx, persist_refresh_token=lambda account, secret: None)
        session = self.channel.session(account, ctx, refresh_token)
        try:
            found = await self.channel.list_participations(session)
        except ProviderError as err:
            raise first_use_error(ProviderError(err.verdict, session.scrub(err.detail))) from None
        marketplaces = [TargetInfo(id=p.marketplace_id, name=p.name, country=p.country)
                        for p in found]
        seen = {m.id for m in marketplaces}
        expected = list(account.settings.get("expected_marketplaces") or [])
        return VerifyResult(refresh_token=session.refresh_token, targets=marketplaces,
                            missing=[m for m in expected if m not in seen], expected=expected)

"""The simulator's Amazon Ads API: GET /v2/profiles and POST /sp/campaigns/list per region."""

from __future__ import annotations

import hashlib
import json

from aiohttp import web

from channel_agent_amazon_ads.sim_common import (
    MARKETPLACES,
    SP_CAMPAIGN_MEDIA_TYPE,
    SimAccount,
    ads_error,
    current_account,
    json_response,
    request_id,
)


class AdsApiEndpoints:
    """Mixed into Simulator: uses its state, adds these handlers."""

    async def _api_account(self, request: web.Request) -> SimAccount | web.Response:
        """Authenticate an Ads API call; apply the account's scenario."""
        token = request.headers.get("Authorization", "")
        entry = self._tokens.get(token[7:]) if token[:7].lower() == "bearer " else None
        if request.headers.get("Amazon-Advertising-API-ClientId") != self.client_id:
            return ads_error(401, "Authentication failed")
        if entry is None or entry.expires_at <= self.clock():
            return ads_error(401, "Authentication failed")
        account = self._accounts.get(entry.account)
        if account is None:
            return ads_error(401, "Authentication failed")
        current_account.set(account.name)
        forced = await self._scenario_response(account, api=True)
        if forced is not None:
            return forced
        if account.scenario in ("revoked", "client_rotated"):
            return ads_error(401, "Authentication failed")
        if account.scenario == "unauthorized":
            return ads_error(401, "Not authorized to access scope")
        if account.scenario == "leaky_errors":
            return ads_error(401, f"Authentication failed for {token}")
        return account

    def _visible_profiles(self, account: SimAccount, region: str) -> list[int]:
        if account.region != region:
            return []
        if account.scenario == "profile_removed":
            return account.profiles[1:]
        return list(account.profiles)

    async def _profiles(self, request: web.Request) -> web.Response:
        account = await self._api_account(request)
        if isinstance(account, web.Response):
            return account
        if account.scenario == "transient_401":
            entry = self._tokens[request.headers["Authorization"][7:]]
            if entry.fails_once:
                entry.fails_once = False
                self._transient_hit.add(account.name)
                return json_response(401, {"message": "Unauthorized"},
                                     headers={"x-amzn-RequestId": request_id()})
        region = request.match_info["region"]
        markets = MARKETPLACES[region]
        body = []
        for i, profile_id in enumerate(self._visible_profiles(account, region)):
            country, currency, timezone, marketplace = markets[i % len(markets)]
            body.append({
                "profileId": profile_id,
                "countryCode": country,
                "currencyCode": currency,
                "timezone": timezone,
                "accountInfo": {
                    "marketplaceStringId": marketplace,
                    "id": "A" + hashlib.sha256(account.name.encode()).hexdigest()[:13].upper(),
                    "type": "seller",
                    "name": account.name,
                    "validPaymentMethod": True,
                },
            })
        return json_response(200, body, headers={"x-amzn-RequestId": request_id()})

    async def _campaigns_list(self, request: web.Request) -> web.Response:
        account = await self._api_account(request)
        if isinstance(account, web.Response):
            return account
        scope = request.headers.get("Amazon-Advertising-API-Scope")
        if not scope:
            return ads_error(401, "Scope header is missing")
        visible = self._visible_profiles(account, request.match_info["region"])
        if not scope.isdigit() or int(scope) not in visible:
            return ads_error(401, "Not authorized to access scope")
        if request.content_type.lower() != SP_CAMPAIGN_MEDIA_TYPE.lower():
            return ads_error(415, f"Content-Type must be {SP_CAMPAIGN_MEDIA_TYPE}")
        if SP_CAMPAIGN_MEDIA_TYPE.lower() not in request.headers.get("Accept", "").lower():
            return ads_error(406, f"Accept must be {SP_CAMPAIGN_MEDIA_TYPE}")
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            return ads_error(400, "Request body is not valid JSON")
        max_results = body.get("maxResults", 100) if isinstance(body, dict) else None
        if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
            return ads_error(400, "maxResults must be a positive integer")
        if account.scenario == "forbidden":
            return ads_error(403, "Not authorized to access this advertiser")
        campaign = {
            "campaignId": f"{scope}01",
            "name": f"{account.name} always-on",
            "state": "ENABLED",
            "targetingType": "AUTO",
            "startDate": "2025-01-01",
            "budget": {"budget": 10.0, "budgetType": "DAILY"},
            "dynamicBidding": {"strategy": "LEGACY_FOR_SALES"},
        }
        return json_response(200, {"campaigns": [campaign][:max_results], "nextToken": None},
                             content_type=SP_CAMPAIGN_MEDIA_TYPE,
                             headers={"x-amzn-RequestId": request_id()})

    # -- control API ------------------------------------------------------------------------

"""The Amazon Ads channel: checks an advertiser's Login with Amazon refresh token.

One check: exchange the refresh token for an access token (or reuse a cached one), list the
profiles the consent covers, and optionally probe each expected profile with the cheapest
campaign call. What each answer means is decided in :mod:`channel_agent_amazon_ads.classify`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import httpx

from agent.channel import (
    Account,
    Channel,
    CheckContext,
    CheckResult,
    Demo,
    MissingSecret,
    Reconnector,
    Secret,
)
from agent.checks.httpretry import RetryPolicy, TransientError, send_with_retries
from agent.redact import redact
from channel_agent_amazon_ads import ads_api, lwa
from channel_agent_amazon_ads.classify import ProviderError, Verdict, conclusive, transient
from channel_agent_amazon_ads.reconnect import AmazonAdsReconnector
from channel_agent_amazon_ads.settings import AmazonAdsAccountSettings, AmazonAdsSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# An access token is not reused during its last minutes, so a check never races its expiry.
REUSE_MARGIN = 300.0
DETAIL_LIMIT = 500

@dataclass(frozen=True)
class _CachedToken:
    access_token: Secret
    refresh_fingerprint: str  # of the refresh token that obtained it
    refreshed_at: float  # monotonic
    expires_at: float  # monotonic
    issued_wall: float
    expires_wall: float


class _TokenFailed(ProviderError):
    """The token refresh failed: the whole account's check ends, whichever call needed it."""


class AmazonAdsChannel(Channel):
    name = "amazon_ads"
    title = "Amazon Ads"
    regions = ("na", "eu", "fe")
    request_endpoints: ClassVar[tuple[str, ...]] = ("token", "profiles", "campaigns_list")

    Settings = AmazonAdsSettings
    AccountSettings = AmazonAdsAccountSettings

    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        super().__init__(settings, accounts)
        self._tokens: dict[str, _CachedToken] = {}
        # account -> (fingerprint of the token it replaced, new refresh token): a rotated
        # token that could not be persisted yet still wins over the stale stored one.
        self._rotated: dict[str, tuple[str, Secret]] = {}
        # Replaceable in tests, so retries do not wait real time.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.monotonic: Callable[[], float] = time.monotonic
        self.jitter = 0.1

    @classmethod
    def demo(cls) -> Demo | None:
        from channel_agent_amazon_ads.demo import AmazonAdsDemo

        return AmazonAdsDemo()

    def reconnector(self) -> Reconnector:
        return AmazonAdsReconnector(self.settings, self._retry_policy, self.first_use)

    async def first_use(self, account: Account, ctx: CheckContext,
                        refresh_token: Secret) -> tuple[list[dict[str, Any]], Secret]:
        """Use ``refresh_token`` once (refresh, ``GET /v2/profiles``): the profiles it reaches
        and the refresh token to keep (Amazon may rotate it). ProviderError, its detail free
        of the token and the client secret, when Amazon refuses or does not answer."""
        check = _Check(self, account, ctx, refresh_token)
        try:
            return await check.list_profiles(), check.refresh_token
        except ProviderError as err:
            raise ProviderError(err.verdict, redact(err.detail, check.secrets)) from None

    def carry_over(self, previous: Channel) -> None:
        if not isinstance(previous, AmazonAdsChannel):
            return
        # A rotated refresh token that could not be stored yet is the credential itself.
        self._rotated.update(previous._rotated)
        same_client = all(previous.settings.get(key) == self.settings.get(key)
                          for key in ("client_id", "client_secret", "endpoints"))
        if same_client:
            names = {account.name for account in self.accounts}
            self._tokens.update({name: token for name, token in previous._tokens.items()
                                 if name in names})

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            refresh_token = self._read_refresh_token(account)
        except MissingSecret as exc:
            detail = redact(str(exc))
            return CheckResult(valid=False, reason="missing_credential", detail=detail)
        return await _Check(self, account, ctx, refresh_token).run()

    def _read_refresh_token(self, account: Account) -> Secret:
        stored = account.settings["refresh_token"].read()
        rotated = self._rotated.get(account.name)
        if rotated is not None:
            replaced_fingerprint, new = rotated
            if stored.fingerprint() == replaced_fingerprint:
                return new
            del self._rotated[account.name]  # persisted, or reconnected meanwhile
        return stored

    def _retry_policy(self, ctx: CheckContext) -> RetryPolicy:
        retry = self.settings["retry"]
        return RetryPolicy(
            initial_backoff=float(retry["initial_backoff"]),
            max_backoff=float(retry["max_backoff"]),
            request_timeout=float(self.settings["request_timeout"]),
            jitter=self.jitter,
            sleep=self.sleep,
            monotonic=self.monotonic,
            clock=ctx.clock,
        )


class _Check:
    """One check of one account."""

    def __init__(
        self, channel: AmazonAdsChannel, account: Account, ctx: CheckContext, refresh_token: Secret
    ) -> None:
        self.channel = channel
        self.account = account
        self.ctx = ctx
        self.refresh_token = refresh_token
        settings = channel.settings
        self.client_id: str = settings["client_id"]
        self.client_secret: Secret = settings["client_secret"]
        self.token_url: str = settings["endpoints"]["token_url"][account.region]
        self.api_url: str = settings["endpoints"]["api_url"][account.region]
        self.policy = channel._retry_policy(ctx)
        self.token: _CachedToken | None = None
        self.client_valid: bool | None = None
        self.profiles: dict[str, bool] = {}
        self.secrets = {self.client_secret.reveal(), refresh_token.reveal()}

    async def run(self) -> CheckResult:
        try:
            problems = await self._check_profiles()
        except ProviderError as err:
            problems = [err]
        return self._result(problems)

    async def list_profiles(self) -> list[dict[str, Any]]:
        """``GET /v2/profiles`` with this account's token (refreshed when needed)."""
        return await self._ads_call(
            "profiles",
            lambda token: ads_api.profiles_request(
                self.ctx.http, self.api_url, self.client_id, token
            ),
            ads_api.parse_profile_list,
        )

    async def _check_profiles(self) -> list[ProviderError]:
        seen = [profile["profileId"] for profile in await self.list_profiles()]
        expected = list(self.account.settings.get("expected_profiles") or [])
        if not expected:
            self.profiles = {str(p): True for p in seen}
            return []
        present = set(seen)
        self.profiles = {str(p): p in present for p in expected}
        problems: list[ProviderError] = []
        missing = [p for p in expected if p not in present]
        if missing:
            listed = ", ".join(map(str, missing))
            problems.append(
                ProviderError(
                    conclusive("profile_missing"), f"profiles: {listed} not in /v2/profiles"
                )
            )
        if self._probe_enabled():
            for profile_id in expected:
                if profile_id in present:
                    problem = await self._probe(profile_id)
                    if problem is not None:
                        problems.append(problem)
        return problems

    async def _probe(self, profile_id: int) -> ProviderError | None:
        try:
            await self._ads_call(
                "campaigns_list",
                lambda token: ads_api.campaigns_probe_request(
                    self.ctx.http, self.api_url, self.client_id, token, profile_id
                ),
                ads_api.parse_campaigns_probe,
            )
        except _TokenFailed:
            raise
        except ProviderError as err:
            if err.verdict.valid is False:
                self.profiles[str(profile_id)] = False
            return ProviderError(err.verdict, f"profile {profile_id}: {err.detail}")
        return None

    def _probe_enabled(self) -> bool:
        override = self.account.settings.get("permission_probe")
        if override is not None:
            return bool(override)
        return bool(self.channel.settings.get("permission_probe", True))

    async def _ads_call(
        self,
        endpoint: str,
        build: Callable[[Secret], httpx.Request],
        parse: Callable[[httpx.Response], T],
    ) -> T:
        token = await self._access_token()
        response = await self._send(endpoint, lambda: build(token))
        if response.status_code == 401:
            # A single 401 is not proof (gateway hiccups): refresh, retry once.
            token = await self._access_token(force=True)
            response = await self._send(endpoint, lambda: build(token))
        return parse(response)

    async def _send(self, endpoint: str, factory: Callable[[], httpx.Request]) -> httpx.Response:
        try:
            return await send_with_retries(
                self.ctx.http,
                factory,
                deadline=self.ctx.deadline,
                endpoint=endpoint,
                record=self.ctx.record_request,
                policy=self.policy,
            )
        except TransientError as exc:
            raise ProviderError(transient(exc.reason), exc.detail) from None

    async def _access_token(self, force: bool = False) -> Secret:
        cached = self.channel._tokens.get(self.account.name)
        if not force and cached is not None and self._reusable(cached):
            self.token = cached
            self.secrets.add(cached.access_token.reveal())
            return cached.access_token
        return await self._refresh()

    def _reusable(self, cached: _CachedToken) -> bool:
        now = self.policy.monotonic()
        interval = float(self.channel.settings["refresh_interval"])
        return (
            cached.refresh_fingerprint == self.refresh_token.fingerprint()
            and now < cached.expires_at - REUSE_MARGIN
            and now - cached.refreshed_at < interval
        )

    async def _refresh(self) -> Secret:
        try:
            response = await self._send(
                "token",
                lambda: lwa.refresh_request(
                    self.ctx.http,
                    self.token_url,
                    self.client_id,
                    self.client_secret,
                    self.refresh_token,
                ),
            )
            grant = lwa.parse_refresh_response(response)
        except ProviderError as err:
            if err.verdict.valid is False:
                self.channel._tokens.pop(self.account.name, None)
            raise _TokenFailed(err.verdict, err.detail) from None
        self.client_valid = True
        self.secrets.add(grant.access_token.reveal())
        if grant.refresh_token is not None and grant.refresh_token != self.refresh_token:
            self._adopt_refresh_token(grant.refresh_token)
        now, wall = self.policy.monotonic(), self.ctx.clock()
        self.token = _CachedToken(
            access_token=grant.access_token,
            refresh_fingerprint=self.refresh_token.fingerprint(),
            refreshed_at=now,
            expires_at=now + grant.expires_in,
            issued_wall=wall,
            expires_wall=wall + grant.expires_in,
        )
        self.channel._tokens[self.account.name] = self.token
        return grant.access_token

    def _adopt_refresh_token(self, new: Secret) -> None:
        """Store a rotated refresh token before anything else uses the grant."""
        self.secrets.add(new.reveal())
        name, fingerprint = self.account.name, new.fingerprint()
        self.channel._rotated[name] = (self.refresh_token.fingerprint(), new)
        persist = self.ctx.persist_refresh_token
        if persist is None:
            log.warning(
                "amazon_ads account %s: Amazon returned a new refresh token (fingerprint %s) "
                "and nothing can persist it: kept in memory only, reconnect if the agent stops",
                name,
                fingerprint,
            )
        else:
            try:
                persist(self.account, new)
            except Exception as exc:  # losing the new token would be worse than going on
                log.error(
                    "amazon_ads account %s: storing the new refresh token (fingerprint %s) "
                    "failed, kept in memory only: %s",
                    name,
                    fingerprint,
                    self._scrub(f"{type(exc).__name__}: {exc}"),
                )
        self.refresh_token = new

    def _scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    def _result(self, problems: list[ProviderError]) -> CheckResult:
        for problem in problems:
            if problem.verdict.agent_bug:
                log.error(
                    "amazon_ads account %s: Amazon rejected a request as malformed (%s); "
                    "this is most likely a bug in the agent",
                    self.account.name,
                    self._scrub(problem.detail),
                )
        fields: dict[str, Any] = {
            "profiles": self.profiles,
            "refresh_token_fingerprint": self.refresh_token.fingerprint(),
            "client_valid": self.client_valid,
        }
        if self.token is not None:
            fields["access_token_issued_at"] = self.token.issued_wall
            fields["access_token_expires_at"] = self.token.expires_wall
        decisive = [p for p in problems if p.verdict.valid is False] or problems
        if not decisive:
            return CheckResult(valid=True, **fields)
        verdict: Verdict = decisive[0].verdict
        if verdict.client_valid is not None:
            fields["client_valid"] = verdict.client_valid
        detail = self._scrub("; ".join(p.detail for p in decisive))
        if len(detail) > DETAIL_LIMIT:
            detail = detail[: DETAIL_LIMIT - 1] + "…"
        return CheckResult(valid=verdict.valid, reason=verdict.reason, detail=detail, **fields)

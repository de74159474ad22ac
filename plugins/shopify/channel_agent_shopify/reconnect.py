"""Re-authorising a Shopify account (``channel-agent reconnect shopify``): the OAuth
authorization code grant of an app install (shopify.dev/docs/apps/build/authentication-
authorization/get-access-tokens/authorization-code-grant).

1. The consent page ``https://{shop}/admin/oauth/authorize`` with ``client_id``, ``scope``
   (the account's ``required_scopes``), ``redirect_uri`` and ``state``. Shopify's grant has no
   PKCE: the core's code challenge is not sent.
2. Shopify redirects with ``code``, ``hmac``, ``host``, ``shop``, ``state`` and ``timestamp``.
   ``hmac`` is the hex HMAC-SHA256, keyed with the app's client secret, of the other
   parameters sorted by name and joined as ``k=v&k=v``: a redirect whose hmac does not verify,
   or that names another shop, is refused before the code is used.
3. ``POST https://{shop}/admin/oauth/access_token`` with ``client_id``, ``client_secret`` and
   ``code`` (and ``expiring=1`` for an account with expiring tokens): the offline access token,
   the granted ``scope``, and for expiring tokens a refresh token.
4. Verification: the new access token reads ``access_scopes.json`` and ``shop.json``.

What is stored: the new access token (non-expiring) or the new refresh token (expiring; the
platform refreshes it into access tokens). Shopify keeps one expiring token per app and shop:
the new grant revokes the previous one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from agent.channel import (
    Account,
    CheckContext,
    ReconnectError,
    Reconnector,
    Secret,
    TargetInfo,
    TransientError,
    VerifyResult,
)
from agent.checks.verdict import ProviderError, transient
from agent.redact import redact
from channel_agent_shopify import shopify_api

if TYPE_CHECKING:
    from channel_agent_shopify.channel import ShopifyChannel

AGAIN = "nothing was stored; run the reconnect again"


def redirect_hmac(params: Mapping[str, str], client_secret: Secret) -> str:
    """The hmac Shopify computes over a redirect's other parameters."""
    message = "&".join(f"{key}={value}" for key, value in sorted(params.items())
                       if key not in ("hmac", "signature"))
    return hmac.new(client_secret.reveal().encode(), message.encode(),
                    hashlib.sha256).hexdigest()


class ShopifyReconnector(Reconnector):
    after_reconnect_note = ("Shopify delivers data again as soon as the platform uses the new "
                            "token; for an expiring token, the platform must refresh with the "
                            "new refresh token (the previous one is revoked).")

    def __init__(self, channel: ShopifyChannel) -> None:
        self.channel = channel
        self.client_id: str = channel.settings.get("client_id") or ""
        self.client_secret: Secret | None = channel.settings.get("client_secret")
        # account -> access token of the grant being verified (expiring tokens store only
        # the refresh token, and verifying must not consume it)
        self._granted: dict[str, Secret] = {}

    def _require_client(self) -> Secret:
        if not self.client_id or self.client_secret is None:
            raise ReconnectError("unsupported", "the shopify channel needs client_id and "
                                                "client_secret for a reconnect")
        return self.client_secret

    def consent_url(self, account: Account, state: str, code_challenge: str,
                    redirect_uri: str) -> str:
        self._require_client()
        query = {"client_id": self.client_id,
                 "scope": ",".join(account.settings.get("required_scopes") or []),
                 "redirect_uri": redirect_uri, "state": state}
        return f"{self.channel.admin_base(account)}/admin/oauth/authorize?{urlencode(query)}"

    def check_redirect(self, params: Mapping[str, str]) -> None:
        secret = self._require_client()
        got = params.get("hmac", "")
        if not got:
            raise ReconnectError("rejected", "the redirect carries no hmac: Shopify signs every "
                                             "redirect (paste the whole redirect URL)")
        if not hmac.compare_digest(got.lower().encode(), redirect_hmac(params, secret).encode()):
            raise ReconnectError("rejected", "the redirect's hmac does not verify with the app's "
                                             "client secret: it was not sent by Shopify, or was "
                                             "altered; " + AGAIN)

    def _check_shop(self, account: Account, params_shop: str | None) -> None:
        if params_shop is not None and params_shop != account.settings["shop"]:
            raise ReconnectError("rejected", f"the consent was given for shop {params_shop!r}, "
                                             f"not {account.settings['shop']}; {AGAIN}")

    async def exchange(self, account: Account, code: str, code_verifier: str,
                       redirect_uri: str, ctx: CheckContext) -> Secret:
        secret = self._require_client()
        expiring = account.settings.get("token_type") == "expiring"
        form = shopify_api.code_form(self.client_id, secret, code, expiring)
        base = self.channel.admin_base(account)
        try:
            response = await ctx.send(lambda: shopify_api.token_request(ctx.http, base, form),
                                      endpoint="token")
        except TransientError as exc:
            raise ReconnectError("unavailable", f"Shopify did not answer the code exchange "
                                                f"({exc.detail}); {AGAIN}") from None
        try:
            grant = shopify_api.parse_token_response(response)
        except ProviderError as err:
            # "400 ... when the request provides an invalid code parameter during
            # authorization code grant" (shopify.dev/docs/api/usage/response-codes)
            if response.status_code == 400 or err.verdict.reason == "invalid_grant":
                raise ReconnectError("code_rejected", f"Shopify refused the authorisation "
                                                      f"code ({err.detail}): codes are single "
                                                      f"use; {AGAIN}") from None
            if err.verdict.valid is None:
                raise ReconnectError("unavailable", f"{err.detail}; {AGAIN}") from None
            raise ReconnectError("rejected", f"Shopify refused the code exchange "
                                             f"({err.detail}); {AGAIN}") from None
        self._granted[account.name] = grant.access_token
        if not expiring:
            return grant.access_token
        if grant.refresh_token is None:
            raise ReconnectError("unavailable", f"the code exchange (expiring=1) answered "
                                                f"without a refresh token; {AGAIN}")
        return grant.refresh_token

    async def verify(self, account: Account, refresh_token: Secret,
                     ctx: CheckContext) -> VerifyResult:
        access = self._granted.pop(account.name, refresh_token)
        base = self.channel.admin_base(account)
        secrets = {access.reveal(), refresh_token.reveal()}
        async def call(endpoint: str, build: Callable[[], httpx.Request],
                       parse: Callable[[httpx.Response], Any]) -> Any:
            try:
                response = await ctx.send(build, endpoint=endpoint)
            except TransientError as exc:
                raise ProviderError(transient(exc.reason), exc.detail) from None
            return parse(response)

        try:
            granted = await call("access_scopes", lambda: shopify_api.access_scopes_request(
                ctx.http, base, access), shopify_api.parse_access_scopes)
            shop = await call("shop", lambda: shopify_api.shop_request(
                ctx.http, base, self.channel.versions.configured, access),
                shopify_api.parse_shop)
        except ProviderError as err:
            detail = redact(err.detail, secrets)
            if err.verdict.valid is None:
                raise ReconnectError("unavailable", f"Shopify did not answer while verifying "
                                                    f"the new token ({detail}); {AGAIN}") from None
            raise ReconnectError("rejected", f"Shopify refused the new token at its first use "
                                             f"({detail}); nothing was stored") from None
        self._check_shop(account, shop.get("myshopify_domain"))
        required = list(account.settings.get("required_scopes") or [])
        scopes = [TargetInfo(id=scope, name=str(shop.get("name") or ""))
                  for scope in sorted(granted)]
        # expected: each required scope as granted (write_x where it stands for read_x)
        expected = [shopify_api.covering_scope(scope, granted) or scope for scope in required]
        return VerifyResult(refresh_token=refresh_token, targets=scopes, expected=expected,
                            missing=shopify_api.missing_scopes(required, granted))

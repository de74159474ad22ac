"""The simulator's Login with Amazon: the token endpoint (refresh, code grant) and consent."""

from __future__ import annotations

import base64
import binascii
import html
import json
import secrets
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from channel_agent_amazon_ads.sim_common import (
    ACCESS_TOKEN_TTL,
    ADS_SCOPE,
    CODE_TTL,
    INVALID_GRANT_REFRESH,
    PRUNE_INTERVAL,
    AccessToken,
    AuthCode,
    SimAccount,
    current_account,
    invalid_client,
    json_response,
    lwa_error,
    missing_param,
    new_refresh_token,
    s256,
)


class LwaEndpoints:
    """Mixed into Simulator: uses its state, adds these handlers."""

    async def _token(self, request: web.Request) -> web.Response:
        params = await self._token_params(request)
        if params is None:
            return lwa_error(400, "invalid_request", "The request body could not be parsed.")
        client_id, client_secret = self._client_credentials(request, params)
        grant_type = params.get("grant_type")
        if not grant_type:
            return missing_param("grant_type")
        if grant_type not in ("refresh_token", "authorization_code"):
            return lwa_error(400, "unsupported_grant_type",
                             f"The authorization grant type is not supported : {grant_type}")
        if not client_id:
            return missing_param("client_id")
        if not client_secret:
            return missing_param("client_secret")
        if client_id != self.client_id or client_secret != self.client_secret:
            return invalid_client()
        if grant_type == "refresh_token":
            return await self._refresh_grant(request, params)
        return self._code_grant(request, params)

    @staticmethod
    async def _token_params(request: web.Request) -> dict[str, str] | None:
        text = await request.text()
        if request.content_type == "application/json":
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            return {str(k): str(v) for k, v in data.items() if v is not None}
        return dict(parse_qsl(text, keep_blank_values=True))

    @staticmethod
    def _client_credentials(request: web.Request,
                            params: dict[str, str]) -> tuple[str | None, str | None]:
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            client_id, _, client_secret = decoded.partition(":")
            return client_id, client_secret
        return params.get("client_id"), params.get("client_secret")

    async def _refresh_grant(self, request: web.Request, params: dict[str, str]) -> web.Response:
        refresh_token = params.get("refresh_token")
        if not refresh_token:
            return missing_param("refresh_token")
        account = self._by_refresh_token(refresh_token)
        if account is None:
            return lwa_error(400, "invalid_grant", INVALID_GRANT_REFRESH)
        current_account.set(account.name)
        forced = await self._scenario_response(account, api=False)
        if forced is not None:
            return forced
        if account.scenario == "revoked":
            return lwa_error(400, "invalid_grant", INVALID_GRANT_REFRESH)
        if account.scenario == "client_rotated":
            return invalid_client()
        if account.scenario == "leaky_errors":
            return lwa_error(400, "invalid_grant",
                             f"refresh_token {refresh_token} of client {self.client_id} "
                             f"(secret {self.client_secret}) was revoked")
        return self._issue(account)

    def _issue(self, account: SimAccount) -> web.Response:
        now = self.clock()
        if now - self._pruned_at >= PRUNE_INTERVAL:
            self._tokens = {t: v for t, v in self._tokens.items() if v.expires_at > now}
            self._pruned_at = now
        access_token = f"Atza|{secrets.token_urlsafe(96)}"
        # after a transient 401 the next token works at once, so "refresh and retry once" heals
        fails_once = account.name not in self._transient_hit
        self._transient_hit.discard(account.name)
        self._tokens[access_token] = AccessToken(account.name, now + ACCESS_TOKEN_TTL,
                                                 fails_once)
        body = {"access_token": access_token, "token_type": "bearer",
                "expires_in": ACCESS_TOKEN_TTL, "refresh_token": account.refresh_token}
        return json_response(200, body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _code_grant(self, request: web.Request, params: dict[str, str]) -> web.Response:
        code = params.get("code")
        if not code:
            return missing_param("code")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return missing_param("redirect_uri")
        grant = self._codes.pop(code, None)  # single use, even when the exchange fails
        if grant is None or grant.expires_at <= self.clock():
            return lwa_error(400, "invalid_grant",
                             "The request has an invalid grant parameter : code")
        current_account.set(grant.account)
        if grant.redirect_uri != redirect_uri:
            return lwa_error(400, "invalid_grant",
                             "The request has an invalid grant parameter : redirect_uri")
        if grant.code_challenge is not None:
            verifier = params.get("code_verifier")
            if not verifier:
                return missing_param("code_verifier")
            if s256(verifier) != grant.code_challenge:
                return lwa_error(400, "invalid_grant",
                                 "The request has an invalid grant parameter : code_verifier")
        account = self._accounts.get(grant.account)
        if account is None:
            return lwa_error(400, "invalid_grant",
                             "The request has an invalid grant parameter : code")
        if account.scenario == "client_rotated":
            return invalid_client()
        if account.scenario == "revoked":
            # a fresh consent: the old refresh token stays dead, the account works again
            account.refresh_token = new_refresh_token(account.name)
            self._by_token[account.refresh_token] = account
            account.scenario = "healthy"
        return self._issue(account)

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id:
            return web.Response(status=400, content_type="text/html",
                                text="<html><body><h1>400 Bad Request</h1>"
                                     "<p>An unknown client_id was provided.</p></body></html>")
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return web.Response(status=400, content_type="text/html",
                                text="<html><body><h1>400 Bad Request</h1>"
                                     "<p>The redirect_uri is missing or invalid.</p></body></html>")
        state = q.get("state")

        def back(**params: str) -> web.Response:
            if state is not None:
                params["state"] = state
            sep = "&" if "?" in redirect_uri else "?"
            return web.Response(status=302,
                                headers={"Location": f"{redirect_uri}{sep}{urlencode(params)}"})

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type",
                        error_description="The response_type must be code.")
        if q.get("scope") != ADS_SCOPE:
            return back(error="invalid_scope",
                        error_description="An unknown scope was requested.")
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            return back(error="invalid_request",
                        error_description="code_challenge_method must be S256.")
        if q.get("sim_decline") == "1":
            return back(error="access_denied",
                        error_description="The user has denied the requested scope.")
        name = q.get("sim_account")
        if name is None:
            return self._login_page(request)
        if name not in self._accounts:
            return web.Response(status=400, content_type="text/html",
                                text=f"<html><body><p>No simulated account named "
                                     f"{html.escape(name)}.</p></body></html>")
        current_account.set(name)
        code = "ANsim" + secrets.token_urlsafe(18)
        self._codes[code] = AuthCode(name, redirect_uri, challenge, self.clock() + CODE_TTL)
        return back(code=code, scope=ADS_SCOPE)

    def _login_page(self, request: web.Request) -> web.Response:
        """Stands in for Amazon's sign-in and consent page."""
        links = []
        for name in self._accounts:
            url = request.rel_url.update_query(sim_account=name)
            links.append(f'<li><a href="{html.escape(str(url))}">Sign in as '
                         f"{html.escape(name)} and allow</a></li>")
        decline = request.rel_url.update_query(sim_decline="1")
        links.append(f'<li><a href="{html.escape(str(decline))}">Cancel</a></li>')
        page = ("<html><head><title>Amazon Sign-In (simulator)</title></head><body>"
                "<h1>Login with Amazon (simulator)</h1><ul>" + "".join(links)
                + "</ul></body></html>")
        return web.Response(text=page, content_type="text/html")


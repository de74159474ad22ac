"""Login with Amazon: the refresh-token and authorization-code grants (requests, answers)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import httpx

from agent.channel import Secret
from agent.checks.httpx_direct import form_body
from channel_agent_amazon_lwa.classify import (
    BAD_RESPONSE,
    ProviderError,
    describe,
    lwa_verdict,
    parse_json,
)


@functools.lru_cache(maxsize=64)
def parsed_url(url: str) -> httpx.URL:
    """The few URLs a check calls, parsed once: httpx parses a URL string in pure Python, a
    tenth of a check's CPU for two requests (docs/performance.md)."""
    return httpx.URL(url)


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded;charset=UTF-8"
DEFAULT_EXPIRES_IN = 3600.0  # the documented access token lifetime


@dataclass(frozen=True)
class TokenGrant:
    access_token: Secret
    expires_in: float
    refresh_token: Secret | None  # as returned; None when the answer carried none


def refresh_request(
    client: httpx.AsyncClient,
    token_url: str,
    client_id: str,
    client_secret: Secret,
    refresh_token: Secret,
) -> httpx.Request:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal()}
    return _token_request(client, token_url, client_id, client_secret, form)


def code_request(
    client: httpx.AsyncClient,
    token_url: str,
    client_id: str,
    client_secret: Secret,
    code: str,
    code_verifier: str | None,
    redirect_uri: str,
) -> httpx.Request:
    """The authorization-code grant of a (re)consent, with its PKCE verifier when the consent
    used PKCE (Amazon Ads' does, Seller Central's does not)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    return _token_request(client, token_url, client_id, client_secret, form)


def _token_request(
    client: httpx.AsyncClient,
    token_url: str,
    client_id: str,
    client_secret: Secret,
    form: dict[str, str],
) -> httpx.Request:
    form = form | {"client_id": client_id, "client_secret": client_secret.reveal()}
    return client.build_request(
        "POST",
        parsed_url(token_url),
        content=form_body(form),
        headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"},
    )


def parse_refresh_response(response: httpx.Response, endpoint: str = "token") -> TokenGrant:
    """The grant in a token endpoint answer; raises :class:`ProviderError` for anything else."""
    body = parse_json(response)
    if not response.is_success or not isinstance(body, dict):
        verdict = lwa_verdict(response.status_code, body)
        raise ProviderError(verdict, describe(endpoint, response, body))

    def bad(what: str) -> ProviderError:
        return ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: {what}")

    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise bad("no access_token in the answer")
    token_type = body.get("token_type")
    if token_type is not None and str(token_type).lower() != "bearer":
        raise bad("token_type is not bearer")
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or expires_in <= 0
    ):
        raise bad("expires_in is not a positive number")
    refresh_token = body.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        refresh_token = None
    return TokenGrant(
        access_token=Secret(access_token),
        expires_in=float(expires_in),
        refresh_token=Secret(refresh_token) if refresh_token else None,
    )

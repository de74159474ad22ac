"""What a Shopify answer means for the credential, the shop, or neither.

Status codes from Shopify's "API response status and error codes"
(https://shopify.dev/docs/api/usage/response-codes); bodies are ``{"errors": "..."}`` (a
string, a list or an object):

    HTTP                             reason            what it says
    -------------------------------  ----------------  ----------------------------------------
    401 (twice)                      unauthorized      "[API] Invalid API key or access token":
                                                       the app was uninstalled or the token
                                                       revoked (or, expiring tokens, expired)
    402                              shop_frozen       "Unavailable Shop": the shop is frozen,
                                                       its owner must pay the outstanding bill
    423                              shop_locked       the shop is locked (fraud review, closed
                                                       by Shopify; 420 before August 2018)
    404 (shop.json, access_scopes)   shop_not_found    no such shop (closed, renamed, a typo)
    403 "Unavailable Shop"           shop_unavailable  seen from Shopify for unavailable shops
                                                       (orbit-apps/elixir-shopifyapi PR #382)
    403 otherwise                    forbidden         the token lacks what the call needs
    429                              throttled         transient; Retry-After is honoured
    5xx                              server_error      transient (an HTML error page too)
    other 3xx/4xx, garbage           bad_response      transient

A required scope absent from ``/admin/oauth/access_scopes.json`` is ``scope_missing``.
The ``shop_*`` reasons are conclusive states of the merchant's shop, not of the credential
(reason class ``merchant``): reconnecting does not help, the merchant (or Shopify) must act.
Alerts route them apart (``ChannelMerchantAccountUnavailable``).

Token endpoint (``POST /admin/oauth/access_token``, refreshing an expiring offline token, owner
mode only), OAuth 2.0 error body ``{"error", "error_description"}``: ``invalid_grant``
(refresh token expired, rotated away or revoked) and ``invalid_client`` (the app's client
credentials) are conclusive; anything else follows the status as above.
"""

from __future__ import annotations

from typing import Any

import httpx

from agent.checks.verdict import Verdict, conclusive, failure_detail, transient
from agent.reasons import MERCHANT, PERMISSION, Reason

# The channel's own reasons (Channel.reasons), in the core's classes.
REASONS: tuple[Reason, ...] = (
    Reason("scope_missing", PERMISSION, "a required access scope is no longer granted"),
    Reason("shop_frozen", MERCHANT,
           "402: the shop is frozen until its owner pays the outstanding balance"),
    Reason("shop_locked", MERCHANT, "423: the shop is locked by Shopify"),
    Reason("shop_not_found", MERCHANT, "404: no shop answers at this myshopify.com domain"),
    Reason("shop_unavailable", MERCHANT,
           "403 'Unavailable Shop': Shopify reports the shop unavailable"),
)


STATUS_VERDICTS: dict[int, Verdict] = {
    401: conclusive("unauthorized"),
    402: conclusive("shop_frozen"),
    403: conclusive("forbidden"),
    404: conclusive("shop_not_found"),
    423: conclusive("shop_locked"),
    429: transient("throttled"),
}
SERVER_ERROR = transient("server_error")
BAD_RESPONSE = transient("bad_response")
TOKEN_ERRORS: dict[str, Verdict] = {
    "invalid_grant": conclusive("invalid_grant"),
    "invalid_client": conclusive("invalid_client", client_valid=False),
}


def api_verdict(status: int, body: Any) -> Verdict:
    """Classify a non-2xx Admin API answer (a 401 only once the retry also got 401)."""
    if status == 403 and "unavailable shop" in error_text(body).lower():
        return conclusive("shop_unavailable")
    if status in STATUS_VERDICTS:
        return STATUS_VERDICTS[status]
    if status >= 500:
        return SERVER_ERROR
    return BAD_RESPONSE


def token_verdict(status: int, body: Any) -> Verdict:
    """Classify a token endpoint answer that carries no usable access token."""
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and code in TOKEN_ERRORS and not 200 <= status < 300:
        return TOKEN_ERRORS[code]
    if status == 429:
        return STATUS_VERDICTS[429]
    if status >= 500:
        return SERVER_ERROR
    if status in (402, 404, 423):  # the shop, not the token
        return STATUS_VERDICTS[status]
    return BAD_RESPONSE


def error_text(body: Any, limit: int = 200) -> str:
    """Shopify's explanation from ``errors`` (string, list or object) or an OAuth error."""
    if not isinstance(body, dict):
        return ""
    if "errors" in body:
        errors = body["errors"]
        if isinstance(errors, list):
            text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                             for e in errors)
        elif isinstance(errors, dict):
            text = "; ".join(f"{key}: {value}" for key, value in errors.items())
        else:
            text = str(errors)
    elif "error" in body:
        text = ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
    else:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(endpoint: str, response: httpx.Response, body: Any) -> str:
    """A short detail for a failed call; built from error texts only."""
    return failure_detail(endpoint, response, body, error_text(body))

"""What a Login with Amazon answer means for a credential, and the helpers every Amazon
API's classifier uses (facts: shared/reference/amazon-ads-api.md §1; SP-API: see below).

Login with Amazon (token endpoint), error body ``{"error", "error_description"}``:


    HTTP           error                     reason               credential
    -------------  ------------------------  -------------------  --------------------------
    any non-2xx    invalid_client            invalid_client       app: client_valid=False
    4xx            invalid_grant             invalid_grant        this account
    4xx            access_denied             invalid_grant        this account (1)
    4xx            unauthorized_client       unauthorized_client  app-level
    4xx            invalid_scope             invalid_scope        app-level
    4xx            invalid_request           bad_response         transient, agent bug (2)
    any non-2xx    server_error,             server_error         transient
                   temporarily_unavailable
    429            anything else             throttled            transient
    5xx            anything else             server_error         transient
    other          unknown or none           bad_response         transient
    2xx            no usable access_token    bad_response         transient

(1) ``access_denied`` is among LwA's codes but only documented for the consent redirect
    ("the user declined"). At the token endpoint it can only mean that the grant behind this
    refresh token is refused, which is what ``invalid_grant`` reports: conclusive for this
    account, never for the client.
(2) The agent builds every token request itself, so ``invalid_request`` says more about the
    agent than about the credential: transient, and logged as an error.

An expired client secret (Selling Partner API applications must rotate theirs every 180 days,
developer-docs.amazon.com/sp-api/docs/rotating-your-apps-lwa-credentials) answers
``invalid_client`` ("Client authentication failed"), or reaches the API and comes back as a 403
whose text says "The LWA secret token you provided has expired" (amzn/selling-partner-api-models
issues #320 and #4489, amzn/selling-partner-api-samples #116): both are ``invalid_client``,
an application-level failure (:func:`expired_secret`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

# The verdict vocabulary is the core's (every channel's classifier uses it); Amazon's modules
# import it from here.
from agent.checks.verdict import ProviderError as ProviderError
from agent.checks.verdict import Verdict as Verdict
from agent.checks.verdict import conclusive as conclusive
from agent.checks.verdict import failure_detail
from agent.checks.verdict import parse_json as parse_json
from agent.checks.verdict import transient as transient

# LwA error codes returned with a 4xx status.
LWA_ERRORS: dict[str, Verdict] = {
    "invalid_grant": conclusive("invalid_grant"),
    "access_denied": conclusive("invalid_grant"),
    "invalid_client": conclusive("invalid_client", client_valid=False),
    "unauthorized_client": conclusive("unauthorized_client"),
    "invalid_scope": conclusive("invalid_scope"),
    "invalid_request": transient("bad_response", agent_bug=True),
    "server_error": transient("server_error"),
    "temporarily_unavailable": transient("server_error"),
}
# Codes that mean the same with any error status.
LWA_ANY_STATUS = frozenset({"invalid_client", "server_error", "temporarily_unavailable"})

THROTTLED = transient("throttled")
SERVER_ERROR = transient("server_error")
BAD_RESPONSE = transient("bad_response")


def lwa_verdict(status: int, body: Any) -> Verdict:
    """Classify a token endpoint answer that carries no usable access token."""
    code = body.get("error") if isinstance(body, dict) else None
    if not isinstance(code, str):
        code = None
    if code in LWA_ANY_STATUS and not 200 <= status < 300:
        return LWA_ERRORS[code]
    if status == 429:
        return THROTTLED
    if status >= 500:
        return SERVER_ERROR
    if 400 <= status < 500 and code in LWA_ERRORS:
        return LWA_ERRORS[code]
    return BAD_RESPONSE


def error_text(body: Any) -> str:
    """The provider's explanation from any known error shape, '' when there is none."""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    if "error" in body:  # LwA
        parts += [_text(body.get("error")), _text(body.get("error_description"))]
    elif "code" in body or "details" in body:  # Ads API documented shape
        parts += [_text(body.get("code")), _text(body.get("details"))]
    elif isinstance(body.get("errors"), list) and body["errors"]:  # SP-API shape
        first = body["errors"][0]
        if isinstance(first, dict):
            parts += [_text(first.get("code")), _text(first.get("message"))]
    for key in ("message", "Message", "detail"):  # gateway and other variants
        if key in body:
            parts.append(_text(body.get(key)))
    text = ": ".join(p for p in parts if p)
    request_id = _text(body.get("requestId"))
    if request_id:
        text = f"{text} (requestId {request_id})" if text else f"requestId {request_id}"
    return text


EXPIRED_SECRET = "lwa secret token you provided has expired"


def expired_secret(body: Any) -> bool:
    """Whether an API error body says the application's LwA client secret expired (in its
    message or its details, wherever the API puts them)."""
    return body is not None and EXPIRED_SECRET in json.dumps(body).lower()


def describe(endpoint: str, response: httpx.Response, body: Any) -> str:
    """A short detail for a failed call; built from error codes and descriptions only."""
    text = error_text(body).removeprefix(f"{response.status_code}: ")  # Ads repeats the status
    return failure_detail(endpoint, response, body, text)


def _text(value: Any, limit: int = 200) -> str:
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""What an Amazon answer means for the credential (facts: shared/reference/amazon-ads-api.md).

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

Amazon Ads API error bodies: ``{"code", "details", "requestId"}``, gateway ``{"message"}``,
or ``{"detail"}``. A 401 is retried once after a forced token refresh before it counts:

    HTTP                       reason          credential
    -------------------------  --------------  ----------------------------------------
    401 (twice)                unauthorized    the account (or the probed profile)
    403                        forbidden       the account (or the probed profile)
    429                        throttled       transient
    5xx                        server_error    transient (a 502 HTML gateway page too)
    other 3xx/4xx (404, 425)   bad_response    transient
    2xx of unknown shape       bad_response    transient (a 200 HTML page, profiles not
                                               a list, profileId missing, no campaigns)

An expected profile absent from ``/v2/profiles`` is ``profile_missing`` (conclusive).
No response at all: ``network`` or ``timeout`` (transient, from ``agent.checks.httpretry``).
"""

from __future__ import annotations

from typing import Any

import httpx

from agent.checks.verdict import Verdict, conclusive, failure_detail, transient

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

# Ads API statuses, looked up after the 401 retry.
ADS_ERRORS: dict[int, Verdict] = {
    401: conclusive("unauthorized"),
    403: conclusive("forbidden"),
    429: transient("throttled"),
}

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


def ads_verdict(status: int) -> Verdict:
    """Classify a non-2xx Ads API status (a 401 only once the retry also got 401)."""
    if status in ADS_ERRORS:
        return ADS_ERRORS[status]
    if status >= 500:
        return SERVER_ERROR
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


def describe(endpoint: str, response: httpx.Response, body: Any) -> str:
    """A short detail for a failed call; built from error codes and descriptions only."""
    text = error_text(body).removeprefix(f"{response.status_code}: ")  # Ads repeats the status
    return failure_detail(endpoint, response, body, text)




def _text(value: Any, limit: int = 200) -> str:
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The Login with Amazon side of a reconnect: the code exchange and what its answers (and the
new token's first use) mean. Both Amazon reconnectors use it; what differs is the consent page.

    where                 answer                                  reason
    --------------------  --------------------------------------  ---------------
    code exchange         invalid_grant mentioning code           code_rejected (expired/reused)
    code exchange         invalid_grant mentioning redirect_uri   rejected
                          or code_verifier
    code exchange         invalid_client                          rejected (client id/secret)
    code exchange/verify  429, 5xx, timeout, garbage              unavailable (try again)
    verify                a conclusive refusal of the new token   rejected
"""

from __future__ import annotations

import httpx

from agent.channel import CheckContext, ReconnectError, Secret, TransientError
from channel_agent_amazon_lwa import grants
from channel_agent_amazon_lwa.classify import ProviderError, describe, lwa_verdict, parse_json

AGAIN = "nothing was stored; run the reconnect again"


async def exchange_code(ctx: CheckContext, token_url: str, client_id: str,
                        client_secret: Secret, code: str, code_verifier: str | None,
                        redirect_uri: str) -> Secret:
    """Trade an authorisation code for the refresh token; ReconnectError otherwise."""
    try:
        response = await ctx.send(
            lambda: grants.code_request(ctx.http, token_url, client_id, client_secret, code,
                                        code_verifier, redirect_uri),
            endpoint="token")
    except TransientError as exc:
        raise ReconnectError("unavailable", f"Amazon did not answer the code exchange "
                                            f"({exc.detail}); {AGAIN}") from None
    if not response.is_success:
        raise exchange_error(response)
    try:
        grant = grants.parse_refresh_response(response)
    except ProviderError as err:
        raise ReconnectError("unavailable", f"{err.detail}; {AGAIN}") from None
    if grant.refresh_token is None:
        raise ReconnectError("unavailable",
                             f"the code exchange answered without a refresh token; {AGAIN}")
    return grant.refresh_token


def exchange_error(response: httpx.Response) -> ReconnectError:
    """What a failed authorization-code exchange means."""
    body = parse_json(response)
    verdict = lwa_verdict(response.status_code, body)
    detail = describe("token", response, body)
    if verdict.valid is None:
        return ReconnectError("unavailable", f"Amazon did not complete the code exchange "
                                             f"({detail}); {AGAIN}")
    description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
    if verdict.reason == "invalid_grant":
        if "code_verifier" in description:
            return ReconnectError("rejected", f"Amazon rejected the PKCE code verifier: the code "
                                              f"belongs to another attempt ({detail}); {AGAIN}")
        if "redirect_uri" in description:
            return ReconnectError("rejected", f"the redirect_uri differs from the one the consent "
                                              f"was asked with ({detail}); {AGAIN}")
        return ReconnectError("code_rejected", f"the authorisation code expired (codes live 5 "
                                               f"minutes) or was already used ({detail}); {AGAIN}")
    if verdict.reason == "invalid_client":
        return ReconnectError("rejected", f"Amazon rejected the app's client id or secret "
                                          f"({detail}): fix client_secret first, every account of "
                                          f"this app is affected")
    return ReconnectError("rejected", f"Amazon refused the code exchange ({detail}); {AGAIN}")


def first_use_error(err: ProviderError) -> ReconnectError:
    """What a failure of the new token's first use (refresh, list) means."""
    if err.verdict.valid is None:
        return ReconnectError("unavailable", f"Amazon did not answer while verifying the new "
                                             f"token ({err.detail}); {AGAIN}")
    return ReconnectError("rejected", f"Amazon refused the new token at its first use "
                                      f"({err.detail}); nothing was stored")

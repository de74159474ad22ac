"""The running agent's end of ``channel-agent reconnect --link``: ``GET /oauth/callback``.

The account holder's browser lands here after the consent page. The ``state`` names a link
recorded by the CLI; it is claimed once (a second request, an expired, withdrawn or unknown
link changes nothing), the code is exchanged and verified, the token stored, the grant
recorded, the account checked at once, and the browser shown a plain result page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.channel import CheckContext, ReconnectError
from agent.reconnect import STEP_TIMEOUT, complete, preflight
from agent.reconnect_redirect import code_from_redirect, result_page
from agent.service import AgentService
from agent.storage.links import ReconnectLink
from agent.storage.state import state_word

log = logging.getLogger(__name__)

_UNUSABLE = {
    "claimed": (409, "This link was already used",
                "This reconnect link has already been used. Nothing was changed."),
    "succeeded": (409, "This link was already used",
                  "This reconnect link has already been used, and the account is reconnected. "
                  "Nothing else to do."),
    "failed": (409, "This link was already used",
               "This reconnect link was used and did not complete. Nothing was changed; please "
               "ask for a new link."),
    "expired": (410, "This link has expired",
                "This reconnect link has expired. Nothing was changed; please ask for a new "
                "link."),
    "cancelled": (410, "This link was withdrawn",
                  "This reconnect link was withdrawn. Nothing was changed; please ask for a new "
                  "link."),
}


def callback_handler(service: AgentService) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def oauth_callback(request: web.Request) -> web.Response:
        state = request.query.get("state")
        if not state:
            return result_page(400, "Nothing to do here",
                               "This address receives the answer of a consent page, and this "
                               "request carries none. Nothing was changed.")
        link = service.store.claim_link(state, time.time())
        if link is None:
            return result_page(404, "Unknown link",
                               "This reconnect link is not known to this agent. Nothing was "
                               "changed; please ask for a new link.")
        if link.status != "claimed":
            return result_page(*_UNUSABLE[link.status])
        try:
            message = await _complete(service, link, dict(request.query))
        except ReconnectError as err:
            service.store.finish_link(state, "failed", time.time(), err.message)
            log.warning("%s/%s: reconnect link failed (%s): %s", link.channel, link.account,
                        err.reason, err.message)
            return result_page(400, "The reconnect did not complete",
                               f"{_sentence(err.message)} Nothing was changed; please ask for a "
                               f"new link.")
        except Exception as exc:  # a plugin bug: the link ends, the agent goes on
            service.store.finish_link(state, "failed", time.time(),
                                      f"internal error: {type(exc).__name__}")
            log.exception("%s/%s: reconnect link failed", link.channel, link.account)
            return result_page(500, "The reconnect did not complete",
                               "Something went wrong on our side. Nothing was changed; please "
                               "ask for a new link.")
        service.store.finish_link(state, "succeeded", time.time(), message)
        return result_page(200, "Account reconnected",
                           f"Thank you. {_sentence(message)} You can close this tab.")

    return oauth_callback


async def _complete(service: AgentService, link: ReconnectLink, query: dict[str, str]) -> str:
    channel = service.config.channels.get(link.channel)
    account = service.find_account(link.channel, link.account)
    if channel is None or account is None:
        raise ReconnectError("unsupported", f"account {link.channel}/{link.account} is not in "
                                            f"this agent's configuration")
    reconnector = preflight(channel, account, link=True)
    code = code_from_redirect(query, link.state, reconnector)
    metrics = service.metrics
    ctx = CheckContext(
        http=service.http[channel.name],
        deadline=time.monotonic() + STEP_TIMEOUT,
        record_request=lambda endpoint, code: metrics.api_requests.labels(
            channel.name, endpoint, code).inc(),
        retry=channel.retry_policy(),
    )
    outcome = await complete(channel, account, code, link, ctx, service.store,
                             accept_missing_targets=link.accept_missing_targets)
    state = await service.scheduler.check_now(account)
    log.info("%s/%s: reconnected through a link (credential fingerprint %s, stored in %s); "
             "the check after: %s", link.channel, link.account, outcome.grant.fingerprint,
             outcome.stored_in, state_word(state))
    missing = outcome.result.missing
    kind = channel.target_kind or "target"
    note = f" It does not reach {kind}(s) {', '.join(missing)}." if missing else ""
    return (f"account {link.account} is reconnected ({len(outcome.result.targets)} {kind}(s) "
            f"reachable); the check after it: {state_word(state)}.{note}")


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."

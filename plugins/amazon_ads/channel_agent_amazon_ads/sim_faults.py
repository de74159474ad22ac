"""The simulator's scenario answers: gateway errors, slowness, broken connections."""

from __future__ import annotations

import secrets
import socket
import struct

from aiohttp import web

from channel_agent_amazon_ads.sim_common import (
    BAD_GATEWAY_HTML,
    GATEWAY_SCENARIOS,
    NO_ANSWER,
    SimAccount,
    ads_error,
    json_response,
    lwa_error,
    request_id,
)


class ScenarioAnswers:
    """Mixed into Simulator: uses its state, adds these answers."""

    async def _break_connection(self, request: web.Request, answer: web.StreamResponse,
                                fault: str) -> web.StreamResponse:
        """Deliver ``answer`` the way the connection fault ``fault`` spoils it."""
        transport = request.transport
        if fault == "connection_reset" or transport is None:
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if transport is not None:
                transport.abort()
            return web.Response(status=NO_ANSWER)
        body = answer.body if isinstance(answer, web.Response) else b""
        body = body if isinstance(body, bytes) else b""
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        stream = web.StreamResponse(status=answer.status, headers=headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        if fault == "truncated_body":
            await stream.write(body[: len(body) // 2])
            transport.close()
            return stream
        for i in range(len(body)):  # trickle
            await stream.write(body[i:i + 1])
            await self._sleep(self.trickle_seconds)
        await stream.write_eof()
        return stream

    # -- scenario answers shared by LwA and the Ads API -------------------------------------

    async def _scenario_response(self, account: SimAccount, *, api: bool) -> web.Response | None:
        """The gateway-level answer the account's scenario forces, or None to go on."""
        scenario = account.scenario
        if scenario == "server_error_burst":
            left = self._burst_left.get(account.name, self.burst_length)
            if left <= 0:
                return None
            self._burst_left[account.name] = left - 1
            scenario = "server_error"
        if scenario == "slow":
            await self._sleep(self.slow_seconds)
            return None
        if scenario not in GATEWAY_SCENARIOS:
            return None
        if scenario in ("throttled", "throttled_no_retry_after"):
            headers = {"x-amzn-ErrorType": "AccessDeniedException",
                       "amazon-advertising-api-throttled": "true",
                       "x-amzn-RequestId": request_id()}
            if scenario == "throttled":
                headers["Retry-After"] = str(self.retry_after)
            return json_response(429, {"message": "Too Many Requests"}, headers=headers)
        if scenario == "server_error":
            if api:
                return ads_error(500, "Internal Server Error")
            return lwa_error(503, "temporarily_unavailable",
                             "The authorization server is temporarily unavailable.")
        if scenario == "malformed_json":
            text = ('[{"profileId":' if api else '{"access_token":"Atza|') + secrets.token_hex(8)
            return web.Response(status=200, text=text, content_type="application/json",
                                charset="UTF-8")
        return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html",
                            charset="utf-8")

    # -- Login with Amazon ------------------------------------------------------------------


"""What `channel-agent reconnect` asks the running agent: ready? check this account now."""

from __future__ import annotations

from typing import Any

import httpx

from agent import __version__
from agent.channel import Account
from agent.cli.common import without_password
from agent.config.loader import Config
from agent.web.server import split_listen_address


def agent_base_url(config: Config, given: str | None) -> str:
    """``--agent-url``, else the configured listen address (wildcards become loopback)."""
    if given:
        return given.rstrip("/")
    host, port = split_listen_address(config.agent.listen_address)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def http_client() -> httpx.AsyncClient:
    """A client that says who it is."""
    return httpx.AsyncClient(headers={"User-Agent": f"channel-health-agent/{__version__}"})


def agent_ready(url: str) -> bool:
    """Whether the agent at ``url`` answers /-/ready with 200."""
    try:
        return httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False



async def recheck(url: str, account: Account, config: Config) -> dict[str, Any]:
    """Ask the running agent to check the account now: its state before and after."""
    timeout = 2 * config.agent.check_timeout + 5  # a check may be running already
    doc: dict[str, Any] = {"url": without_password(url, url)}
    try:
        async with http_client() as http:
            response = await http.post(f"{url}/api/v1/recheck", timeout=timeout,
                                       json={"channel": account.channel, "account": account.name})
    except httpx.HTTPError as exc:
        doc["error"] = (f"no agent answered ({type(exc).__name__}); it picks the new token up "
                        f"at its next check")
        return doc
    if response.status_code == 404:
        doc["error"] = ("the agent there does not know this account (does it run with another "
                        "configuration?)")
    elif not response.is_success:
        doc["error"] = f"the agent answered HTTP {response.status_code}"
    else:
        body = response.json()
        doc["before"], doc["after"] = body["before"], body["after"]
    return doc

"""Building a Shopify channel over the simulator, as a plugin author's tests do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from channel_agent_shopify.channel import ShopifyChannel
from channel_agent_shopify.simulator import Simulator

from agent.channel import Account, CheckContext
from agent.checks.httpretry import RetryPolicy
from agent.config.loader import build_config

CLIENT_ID = "test-shopify-app"
CLIENT_SECRET = "test-shopify-secret-planted"
REDIRECT = "http://127.0.0.1:8765/oauth/callback"
SCOPES = ["read_orders", "read_products"]


def channel_for(sim: Simulator | None, tmp_path: Path, accounts: list[dict[str, Any]],
                **settings: Any) -> ShopifyChannel:
    (tmp_path / "client_secret").write_text(CLIENT_SECRET)
    data = {
        "agent": {"state_path": ":memory:"},
        "channels": {"shopify": {
            "client_id": CLIENT_ID, "client_secret_file": "client_secret",
            "endpoints": {"admin_url": sim.admin_url() if sim else "https://{shop}"},
            "retry": {"initial_backoff": "10ms", "max_backoff": "10ms"},
            "accounts": accounts,
            **settings,
        }},
    }
    config = build_config(data, {"shopify": ShopifyChannel}, base_dir=tmp_path)
    return config.channels["shopify"]


def shop_account(tmp_path: Path, name: str, token: str, **extra: Any) -> dict[str, Any]:
    """An account entry whose access token is written to a file."""
    path = tmp_path / f"{name}.access_token"
    path.write_text(token)
    return {"name": name, "shop": f"{name}.myshopify.com", "access_token_file": str(path),
            "required_scopes": list(SCOPES), **extra}


def account(channel: ShopifyChannel, name: str) -> Account:
    return next(a for a in channel.accounts if a.name == name)


def ctx(http: httpx.AsyncClient, budget: float = 10.0, **kwargs: Any) -> CheckContext:
    """A check context whose retries back off 10ms (the channel's test configuration)."""
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.01, request_timeout=5.0)
    return CheckContext(http=http, deadline=time.monotonic() + budget,
                        retry=kwargs.pop("retry", retry), **kwargs)

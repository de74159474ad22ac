"""``channel-agent demo`` for Shopify: a simulator with one shop per interesting scenario."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from agent.channel import Demo
from agent.demo import SimulatorDemo
from channel_agent_shopify.simulator import SCENARIOS, SimShop, Simulator

CLIENT_ID = "sim-shopify-app"
SCOPES = ["read_orders", "read_products"]
# (account, shop name, scenario, token type)
DEMO_SHOPS: tuple[tuple[str, str, str, str], ...] = (
    ("acme-shop", "acme", "healthy", "non_expiring"),
    ("globex-shop", "globex", "uninstalled", "non_expiring"),
    ("initech-shop", "initech", "frozen", "non_expiring"),
    ("umbrella-shop", "umbrella", "locked", "non_expiring"),
    ("hooli-shop", "hooli", "scope_removed", "non_expiring"),
    ("stark-shop", "stark", "throttled", "non_expiring"),
    ("wayne-shop", "wayne", "server_error", "non_expiring"),
    ("wonka-shop", "wonka", "healthy", "expiring"),
    ("cyberdyne-shop", "cyberdyne", "deprecated", "non_expiring"),
    ("soylent-shop", "soylent", "not_found", "non_expiring"),
)
DATA_AGE_HOURS = {"acme-shop": 2, "globex-shop": 70, "initech-shop": 50, "wonka-shop": 1}
DATASETS = {"orders_daily": {"source": Demo.WAREHOUSE_SOURCE, "max_age": "36h"}}



class ShopifyDemo(SimulatorDemo):
    def __init__(self) -> None:
        self.simulator = Simulator(CLIENT_ID, f"sim-secret-{secrets.token_urlsafe(24)}")

    async def start(self, workdir: Path) -> dict[str, Any]:
        secrets_dir = self.secrets_dir(workdir)
        accounts = []
        for name, shop_name, scenario, token_type in DEMO_SHOPS:
            shop = SimShop(f"{shop_name}.myshopify.com", list(SCOPES), scenario)
            if token_type == "expiring":
                shop.refresh_token = "shprt_" + secrets.token_hex(16)
            self.simulator.add_shop(shop)
            token_file = secrets_dir / f"{name}.access_token"
            self.write_secret(token_file, shop.access_token)
            account: dict[str, Any] = {"name": name, "shop": shop.domain,
                                       "access_token_file": str(token_file),
                                       "required_scopes": list(SCOPES),
                                       "token_type": token_type}
            if shop.refresh_token:
                refresh_file = secrets_dir / f"{name}.refresh_token"
                self.write_secret(refresh_file, shop.refresh_token)
                account["refresh_token_file"] = str(refresh_file)
            accounts.append(account)
        secret_file = secrets_dir / "shopify_client_secret"
        self.write_secret(secret_file, self.simulator.client_secret)
        await self.start_simulator()
        for account in accounts:  # each shop its own host, as on Shopify (simulator.py)
            account["admin_url"] = self.simulator.shop_url(account["shop"])
        return {
            "client_id": CLIENT_ID,
            "client_secret_file": str(secret_file),
            "api_version": "2026-01",
            "endpoints": {"admin_url": self.simulator.admin_url()},
            "retry": {"initial_backoff": "1s", "max_backoff": "4s"},
            "datasets": DATASETS,
            "accounts": accounts,
        }


    def describe(self) -> list[str]:
        base = self.simulator.base_url
        lines = [f"Shopify simulator (Admin API, OAuth): {base}",
                 f"  control API: {base}/_sim/shops  (scenarios: {', '.join(SCENARIOS)})",
                 f"  change a scenario: curl -X PUT -H 'Content-Type: application/json' "
                 f"-d '{{\"scenario\": \"frozen\"}}' {base}/_sim/shops/acme.myshopify.com"]
        lines += [f"  {shop.domain}: {shop.scenario}" for shop in self.simulator.shops.values()]
        return lines

    def data_syncs(self) -> list[tuple[str, str, float]]:
        return [(name, "orders_daily", hours) for name, hours in DATA_AGE_HOURS.items()]

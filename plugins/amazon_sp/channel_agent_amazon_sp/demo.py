"""``channel-agent demo`` for the Selling Partner API: a simulator with one seller per
scenario. The sellers are the merchants of the Amazon Ads demo, so the landing page shows each
merchant's two connections side by side: globex-eu's advertising consent is revoked while its
seller authorisation works (docs/advertising-invalid-marketplace-valid.md)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from agent.demo import SimulatorDemo
from channel_agent_amazon_sp.simulator import SimSeller, SpSimulator

CLIENT_ID = "amzn1.application-oa2-client.sim-sp"
APPLICATION_ID = "amzn1.sp.solution.sim"

# (merchant, region, marketplaces, scenario)
DEMO_SELLERS: tuple[tuple[str, str, list[str], str], ...] = (
    ("acme-us", "na", ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"], "healthy"),
    ("globex-eu", "eu", ["A1PA6795UKMFR9"], "healthy"),
    ("initech-us", "na", ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"], "marketplace_removed"),
    ("umbrella-fe", "fe", ["A1VC38T7YXB528"], "revoked"),
    ("hooli-eu", "eu", ["A1F83G8C2ARO7P"], "throttled"),
    ("stark-na", "na", ["ATVPDKIKX0DER"], "suspended"),
    ("wayne-fe", "fe", ["A1VC38T7YXB528"], "server_error"),
    ("wonka-eu", "eu", ["A1PA6795UKMFR9"], "malformed"),
)


class AmazonSpDemo(SimulatorDemo):
    """A running :class:`SpSimulator` and the ``amazon_sp`` config section pointing at it."""

    def __init__(self) -> None:
        self.simulator = SpSimulator(CLIENT_ID, f"sim-sp-secret-{secrets.token_urlsafe(24)}",
                                     APPLICATION_ID)

    async def start(self, workdir: Path) -> dict[str, Any]:
        secrets_dir = self.secrets_dir(workdir)
        accounts = []
        for name, region, marketplaces, scenario in DEMO_SELLERS:
            seller = self.simulator.add_seller(SimSeller(name, region, marketplaces, scenario))
            token_file = secrets_dir / f"{name}.sp_refresh_token"
            self.write_secret(token_file, seller.refresh_token)
            accounts.append({"name": name, "region": region,
                             "refresh_token_file": str(token_file),
                             "expected_marketplaces": list(marketplaces),
                             "selling_partner_id": seller.selling_partner_id})
        client_secret_file = secrets_dir / "amazon_sp_client_secret"
        self.write_secret(client_secret_file, self.simulator.client_secret)
        await self.start_simulator()
        return {
            "client_id": CLIENT_ID,
            "client_secret_file": str(client_secret_file),
            "application_id": APPLICATION_ID,
            "draft_app": True,
            "client_secret_rotated": "2026-07-01",
            "participations_interval": "1m",
            "endpoints": self.simulator.endpoints(),
            "retry": {"initial_backoff": "1s", "max_backoff": "4s"},
            "accounts": accounts,
        }


    def describe(self) -> list[str]:
        base = self.simulator.base_url
        lines = [f"Selling Partner API simulator (LwA + Sellers API + consent): {base}",
                 f"  control API: {base}/_sim/accounts"]
        lines += [f"  {s.name} ({s.region}): {s.scenario}" for s in self.simulator.sellers.values()]
        return lines

"""``channel-agent demo`` for Amazon Ads: a simulator with one account per interesting scenario."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from agent.channel import Demo
from agent.demo import SimulatorDemo
from channel_agent_amazon_ads.simulator import SimAccount, Simulator

CLIENT_ID = "amzn1.application-oa2-client.sim"

# (name, region, profiles, scenario); expected_profiles are the profiles listed here, so the
# profile_removed account expects the profile the simulator hides.
DEMO_ACCOUNTS: tuple[tuple[str, str, list[int], str], ...] = (
    ("acme-us", "na", [1111111111, 1111111112], "healthy"),
    ("globex-eu", "eu", [2222222221], "revoked"),
    ("initech-us", "na", [3333333331, 3333333332], "profile_removed"),
    ("umbrella-fe", "fe", [4444444441], "forbidden"),
    ("hooli-eu", "eu", [5555555551, 5555555552], "throttled"),
    ("stark-na", "na", [6666666661], "server_error"),
    ("wayne-fe", "fe", [7777777771], "malformed_json"),
    ("wonka-eu", "eu", [8888888881], "html_gateway"),
    ("cyberdyne-fe", "fe", [9999999991], "transient_401"),
    ("soylent-na", "na", [1212121211], "unauthorized"),
)


# Hours since each account's last successful sync of sp_campaigns_daily (36h allowed): fresh
# where the credential works, stale for cyberdyne-fe although its credential is valid (its
# sync job broke), stale for globex-eu because its credential was revoked.
DATA_AGE_HOURS: dict[str, float] = {
    "acme-us": 3, "globex-eu": 80, "initech-us": 60, "umbrella-fe": 50, "hooli-eu": 5,
    "stark-na": 6, "wayne-fe": 4, "wonka-eu": 7, "cyberdyne-fe": 52, "soylent-na": 100,
}
DATASETS = {"sp_campaigns_daily": {"source": Demo.WAREHOUSE_SOURCE, "max_age": "36h"}}
# acme-us also reports sb_campaigns_daily by heartbeat: "no data yet" until mark-synced.
HEARTBEAT_DATASETS = {"acme-us": {"sb_campaigns_daily": {"source": Demo.HEARTBEAT_SOURCE,
                                                         "max_age": "48h"}}}



class AmazonAdsDemo(SimulatorDemo):
    """A running :class:`Simulator` and the ``amazon_ads`` config section pointing at it."""

    def __init__(self, *, slow_seconds: float = 60.0, retry_after: int = 1) -> None:
        self.simulator = Simulator(CLIENT_ID, f"sim-secret-{secrets.token_urlsafe(24)}",
                                   slow_seconds=slow_seconds, retry_after=retry_after)

    async def start(self, workdir: Path) -> dict[str, Any]:
        secrets_dir = self.secrets_dir(workdir)
        accounts = []
        for name, region, profiles, scenario in DEMO_ACCOUNTS:
            account = SimAccount.create(name, region, profiles, scenario)
            self.simulator.add_account(account)
            token_file = secrets_dir / f"{name}.refresh_token"
            self.write_secret(token_file, account.refresh_token)
            accounts.append({"name": name, "region": region,
                             "refresh_token_file": str(token_file),
                             "expected_profiles": list(profiles),
                             "datasets": HEARTBEAT_DATASETS.get(name, {})})
        client_secret_file = secrets_dir / "amazon_ads_client_secret"
        self.write_secret(client_secret_file, self.simulator.client_secret)
        await self.start_simulator()
        return {
            "client_id": self.simulator.client_id,
            "client_secret_file": str(client_secret_file),
            "refresh_token_max_age": "365d",
            "endpoints": self.simulator.endpoints(),
            "retry": {"initial_backoff": "1s", "max_backoff": "4s"},
            "datasets": DATASETS,
            "accounts": accounts,
        }


    def describe(self) -> list[str]:
        base = self.simulator.base_url
        example = next(iter(self.simulator.accounts), None)
        lines = [
            f"Amazon Ads simulator (Login with Amazon + Ads API): {base}",
            f"  control API: {base}/_sim/accounts  (scenarios: {base}/_sim/scenarios)",
        ]
        if example is not None:
            lines.append(
                f"  change a scenario: curl -X PUT -H 'Content-Type: application/json' "
                f"-d '{{\"scenario\": \"revoked\"}}' {base}/_sim/accounts/{example.name}")
        lines += [f"  {a.name} ({a.region}): {a.scenario}" for a in self.simulator.accounts]
        return lines

    def data_syncs(self) -> list[tuple[str, str, float]]:
        return [(name, "sp_campaigns_daily", hours) for name, hours in DATA_AGE_HOURS.items()]

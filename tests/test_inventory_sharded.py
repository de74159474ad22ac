"""Three real agents, shards 0/3, 1/3 and 2/3, reading one inventory file: every discovered
account is checked by exactly one of them, and a new one lands on exactly one."""

import json
import time

import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread

from tests.helpers import Agent, free_port, write_sim_config

pytestmark = pytest.mark.integration

CLIENT_SECRET = "PLANTED-client-secret-inventory"
ACCOUNTS = {f"shop-{i:02d}": (("na", "eu", "fe")[i % 3], "healthy") for i in range(12)}


def test_every_replica_keeps_its_share_of_the_discovered_accounts(tmp_path):
    sim = Simulator(client_secret=CLIENT_SECRET)
    thread = SimulatorThread(sim)
    thread.start()
    config_path = write_sim_config(tmp_path, sim, CLIENT_SECRET, ACCOUNTS, state_path=":memory:",
                                   check_interval="2s", check_timeout="1s")
    config = json.loads(config_path.read_text())
    rows = [{"channel": "amazon_ads", "account": a["name"], "region": a["region"],
             "expected_profiles": a["expected_profiles"],
             "refresh_token_file": str(tmp_path / a["refresh_token_file"]),
             "labels": {"merchant": a["name"].upper()}}
            for a in config["channels"]["amazon_ads"].pop("accounts")]
    inventory = tmp_path / "inventory" / "connections.json"
    inventory.parent.mkdir()
    inventory.write_text(json.dumps(rows))
    config["inventory_sources"] = {"connections": {
        "type": "file", "files": "inventory/*.json", "settle": "0s", "interval": "1s",
        "timeout": "500ms", "channels": ["amazon_ads"]}}
    config_path.write_text(json.dumps(config))
    agents = [Agent(config_path, free_port(), tmp_path / f"agent-{i}.log",
                    args=("--shard", f"{i}/3")) for i in range(3)]
    try:
        for agent in agents:
            agent.spawn()
        for agent in agents:
            agent.wait_ready()
        owned = [_checked(agent, set(ACCOUNTS)) for agent in agents]
        assert sorted(name for share in owned for name in share) == sorted(ACCOUNTS)

        new = SimAccount.create("shop-new", "eu", [4242], "healthy")
        sim.add_account(new)
        (tmp_path / "secrets" / "shop-new.token").write_text(new.refresh_token + "\n")
        rows.append({"channel": "amazon_ads", "account": "shop-new", "region": "eu",
                     "expected_profiles": "4242",
                     "refresh_token_file": str(tmp_path / "secrets" / "shop-new.token")})
        inventory.write_text(json.dumps(rows))
        everyone = set(ACCOUNTS) | {"shop-new"}
        after = [_checked(agent, everyone) for agent in agents]
        holders = [i for i, share in enumerate(after) if "shop-new" in share]
        assert len(holders) == 1
        assert [after[i] - {"shop-new"} for i in range(3)] == owned  # nobody else moved
        status = agents[holders[0]].status()
        [row] = [a for a in status["accounts"] if a["account"] == "shop-new"]
        assert row["source"] == "connections" and row["state"] == "valid"
        assert status["inventory_sources"]["connections"]["accounts"] == 13
        merchant = agents[0].sample("channel_account_info", sorted(owned[0])[0])
        assert merchant == 1.0
        assert sim.count("/auth/o2/token", account="shop-new") == 1
    finally:
        for agent in agents:
            agent.stop()
        thread.stop()


def _checked(agent: Agent, expected: set[str]) -> set[str]:
    """The accounts the agent owns, once it knows every one of ``expected`` and checked its
    own."""
    deadline = time.monotonic() + 20
    while True:
        status = agent.status()
        accounts = status["accounts"]
        known = status["agent"]["accounts_configured"] == len(expected)
        if known and all(a["state"] == "valid" for a in accounts):
            return {a["account"] for a in accounts}
        assert time.monotonic() < deadline, agent.log.read_text()
        time.sleep(0.2)

"""Three real agents, shards 0/3, 1/3 and 2/3, against one simulator: every account is
checked by exactly one of them."""

import time

import httpx
import pytest
from channel_agent_amazon_ads.simulator import Simulator, SimulatorThread
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Agent, free_port, write_sim_config

pytestmark = pytest.mark.integration

CLIENT_SECRET = "PLANTED-client-secret-sharded"
ACCOUNTS = {f"merchant-{i:02d}": (("na", "eu", "fe")[i % 3], "healthy") for i in range(30)}
TOKEN_PATH = "/auth/o2/token"


def test_three_shards_check_every_account_exactly_once(tmp_path):
    sim = Simulator(client_secret=CLIENT_SECRET)
    thread = SimulatorThread(sim)
    thread.start()
    # One configuration for all replicas, as a StatefulSet's pods share one ConfigMap; the
    # state stays in memory (each pod has a volume of its own, these processes have not).
    config = write_sim_config(tmp_path, sim, CLIENT_SECRET, ACCOUNTS, state_path=":memory:",
                              check_interval="3s", check_timeout="2s")
    agents = [Agent(config, free_port(), tmp_path / f"agent-{index}.log",
                    args=("--shard", f"{index}/3")) for index in range(3)]
    try:
        for agent in agents:
            agent.spawn()
        for agent in agents:
            agent.wait_ready()
        owned = {i: _wait_until_all_checked(agent) for i, agent in enumerate(agents)}
        checked_by = {name: [i for i in owned if name in owned[i]] for name in ACCOUNTS}
        assert checked_by == {name: [owners[0]] for name, owners in checked_by.items()}
        assert all(owned.values()), "each shard owns some of 30 accounts"

        # Each agent process exchanges a refresh token once and then reuses the access token
        # (refresh_interval 1h): one token request per account means one process checked it.
        for name in ACCOUNTS:
            assert sim.count(TOKEN_PATH, account=name) == 1, name
            assert sim.count(account=name) > 1, name  # and its profiles were listed

        for index, agent in enumerate(agents):
            families = {f.name: f for f in text_string_to_metric_families(agent.metrics())}
            [info] = families["channel_agent_shard_info"].samples
            assert info.labels == {"index": str(index), "count": "3"}
            [accounts] = families["channel_agent_accounts"].samples
            assert accounts.value == len(owned[index])
            exported = {s.labels["account"] for s in families["channel_credential_valid"].samples}
            assert exported == owned[index]
            elsewhere = sorted(owned[(index + 1) % 3])[0]
            response = httpx.post(agent.url + "/api/v1/recheck",
                                  json={"channel": "amazon_ads", "account": elsewhere})
            assert response.status_code == 404
            assert response.json()["error"] == (
                f"checked by the replica of shard {(index + 1) % 3}/3; this one is {index}/3")
    finally:
        for agent in agents:
            agent.stop()
        thread.stop()


def _wait_until_all_checked(agent: Agent) -> set[str]:
    """The accounts the agent owns, once every one of them has been checked."""
    deadline = time.monotonic() + 20
    while True:
        status = agent.status()
        assert status["agent"]["accounts_configured"] == len(ACCOUNTS)
        accounts = status["accounts"]
        if all(a["state"] == "valid" for a in accounts) or time.monotonic() > deadline:
            assert [a for a in accounts if a["state"] != "valid"] == [], agent.log.read_text()
            return {a["account"] for a in accounts}
        time.sleep(0.2)

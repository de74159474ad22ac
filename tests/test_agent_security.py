"""`channel-agent run` with a web config, on non-loopback addresses, and reloaded while running."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread

from tests.helpers import BIN, Agent, free_port, write_sim_config
from tests.tlsfiles import bcrypt_hash, server_files

pytestmark = pytest.mark.integration

PASSWORD = "PLANTED-web-password-71c2"


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator()
    with SimulatorThread(simulator):
        yield simulator


@pytest.fixture
def config(sim, tmp_path):
    return write_sim_config(tmp_path, sim, sim.client_secret,
                            {f"acct-{tmp_path.name[-12:]}": ("na", "healthy")})


def add_account(sim, tmp_path, name: str, region: str, scenario: str) -> dict:
    """One more simulator account and its configuration entry."""
    account = SimAccount.create(name, region, [2000], scenario)
    sim.add_account(account)
    (tmp_path / "secrets" / f"{name}.token").write_text(account.refresh_token + "\n")
    return {"name": name, "region": region, "expected_profiles": [2000],
            "refresh_token_file": f"secrets/{name}.token"}


def run_briefly(*args: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "channel-agent", "run", *args], capture_output=True,
                          text=True, timeout=timeout)


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition never met")


def test_refuses_a_non_loopback_address_without_a_web_config(config):
    result = run_briefly("--config", str(config), "--web.listen-address", f":{free_port()}")
    assert result.returncode == 2
    assert "refusing to listen on every interface without a web configuration" in result.stderr


def test_allow_insecure_says_so_loudly(config, tmp_path):
    port = free_port()
    agent = Agent(config, port, tmp_path / "agent.log", args=(
        "--web.listen-address", f":{port}", "--web.allow-insecure"))
    agent.start()
    try:
        assert "level=WARNING" in agent.log.read_text()
        assert "INSECURE: serving http://0.0.0.0:" in agent.log.read_text()
    finally:
        agent.stop()


def test_a_bad_web_config_is_refused_at_start_with_every_problem(config, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  sre: {PASSWORD}\ntls_server_config:\n  cert: x\n")
    result = run_briefly("--config", str(config), "--web.config.file", str(web))
    assert result.returncode == 2
    assert "error: 4 problem(s) in the web configuration:" in result.stderr
    assert f"{web}:2: basic_auth_users.sre: must be a bcrypt hash" in result.stderr
    assert PASSWORD not in result.stderr


def test_https_and_basic_auth_from_the_web_config(config, tmp_path):
    tls = server_files(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config: {{cert_file: {tls.cert_file}, key_file: {tls.key_file}}}\n"
                   f"basic_auth_users:\n  sre: '{bcrypt_hash(PASSWORD)}'\n")
    port = free_port()
    agent = Agent(config, port, tmp_path / "agent.log", args=("--web.config.file", str(web)),
                  scheme="https", verify=tls.client_context(), auth=("sre", PASSWORD))
    agent.start()
    try:
        assert agent.get("/metrics").status_code == 200
        assert agent.get("/metrics", auth=None).status_code == 401
        assert agent.post("/-/reload", auth=("sre", "wrong")).status_code == 401
        account = json.loads(config.read_text())["channels"]["amazon_ads"]["accounts"][0]["name"]
        page = f"/accounts/amazon_ads/{account}"
        pages = [agent.get(path) for path in ("/", page, "/api/v1/accounts", "/?state=invalid")]
        assert [r.status_code for r in pages] == [200, 200, 200, 200]
        assert all(agent.get(path, auth=None).status_code == 401 for path in ("/", page))
        assert agent.post(page + "/reconnect-link", auth=None).status_code == 401
        assert not any(PASSWORD in r.text + str(r.headers) for r in pages)
        env = {"SSL_CERT_FILE": str(tls.ca_file), "PATH": str(BIN)}
        status = subprocess.run(
            [BIN / "channel-agent", "status", "--url", f"https://sre:{PASSWORD}@127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=30)
        assert status.returncode == 0 and "ACCOUNT" in status.stdout, status.stderr
        denied = subprocess.run(
            [BIN / "channel-agent", "status", "--url", f"https://sre:{PASSWORD}x@127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=30)
        assert denied.returncode == 1 and "401" in denied.stderr
        assert PASSWORD not in denied.stderr + agent.log.read_text()
    finally:
        agent.stop()


def test_sighup_and_post_reload_apply_a_changed_config(sim, config, tmp_path):
    port = free_port()
    agent = Agent(config, port, tmp_path / "agent.log")
    agent.start()
    try:
        data = json.loads(config.read_text())
        section = data["channels"]["amazon_ads"]
        section["accounts"].append(add_account(sim, tmp_path, f"added-{tmp_path.name[-12:]}",
                                               "eu", "revoked"))
        config.write_text(json.dumps(data))
        agent.proc.send_signal(signal.SIGHUP)
        accounts = wait_for(lambda: len(agent.get("/api/v1/status").json()["accounts"]) == 2)
        assert accounts
        added = section["accounts"][1]["name"]
        assert agent.recheck(added)["after"]["reason"] == "invalid_grant"

        del section["accounts"][0]
        section["acounts"] = []  # a typo: the whole file is refused
        config.write_text(json.dumps(data))
        response = agent.post("/-/reload")
        assert response.status_code == 500
        assert "channels.amazon_ads.acounts: unknown key" in response.json()["problems"][0]
        assert agent.sample("channel_agent_config_last_reload_successful", None) == 0
        assert len(agent.get("/api/v1/status").json()["accounts"]) == 2

        del section["acounts"]
        config.write_text(json.dumps(data))
        response = agent.post("/-/reload")
        assert response.status_code == 200 and response.json()["removed"] == [
            f"amazon_ads/acct-{tmp_path.name[-12:]}"]
        assert agent.sample("channel_agent_config_last_reload_successful", None) == 1
        assert agent.sample("channel_credential_valid", section["accounts"][0]["name"]) == 0
        log = agent.log.read_text()
        assert "configuration reload failed" in log and "reloaded: 1 account(s)" in log
    finally:
        agent.stop()

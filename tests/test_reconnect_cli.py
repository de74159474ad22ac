"""`channel-agent reconnect` as a real process, beside a real agent, against the simulator.

The tests play the browser with tests/fake_browser.py: consent as a simulated account, then
hand the redirect to the command's standard input (--no-browser) or to the agent (--link).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread

from tests.fake_browser import consent
from tests.helpers import BIN, start_agent

pytestmark = pytest.mark.integration

ACCOUNTS = {  # name -> (region, profiles, scenario)
    "paste-na": ("na", [1001], "revoked"),
    "decline-eu": ("eu", [1002], "healthy"),
    "link-fe": ("fe", [1003], "revoked"),
    "removed-na": ("na", [1004, 1005], "profile_removed"),
    "env-na": ("na", [1006], "revoked"),
    "crash-na": ("na", [1007], "revoked"),
}
ENV_VAR = "RECONNECT_TEST_TOKEN"

# Runs the CLI with os.replace stopped just before the token file is renamed into place: the
# test kills the process there, between the temp file's fsync and the rename.
CRASH_WRAPPER = """
import os, sys, time
from pathlib import Path
target, marker = sys.argv[1], sys.argv[2]
real_replace = os.replace
def replace(src, dst, *args, **kwargs):
    if os.fspath(dst) == target:
        Path(marker).write_text(os.fspath(src))
        time.sleep(600)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
sys.argv = ["channel-agent", *sys.argv[3:]]
from agent.cli import main
main()
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconnect")
    sim = Simulator(client_secret="sim-secret-for-reconnect")
    (tmp / "client_secret").write_text(sim.client_secret + "\n")
    accounts = []
    for name, (region, profiles, scenario) in ACCOUNTS.items():
        account = SimAccount.create(name, region, profiles, scenario)
        sim.add_account(account)
        entry = {"name": name, "region": region, "expected_profiles": profiles}
        if name == "env-na":
            entry["refresh_token"] = f"${{{ENV_VAR}:-{account.refresh_token}}}"
        else:
            (tmp / f"{name}.token").write_text(account.refresh_token + "\n")
            entry["refresh_token_file"] = f"{name}.token"
        accounts.append(entry)
    thread = SimulatorThread(sim)
    thread.start()
    agent = start_agent(tmp, {"channels": {"amazon_ads": {
        "client_id": sim.client_id, "client_secret_file": "client_secret",
        "endpoints": sim.endpoints(), "accounts": accounts,
    }}})
    for name in ACCOUNTS:
        agent.recheck(name)
    yield {"sim": sim, "agent": agent, "tmp": tmp, "config": str(agent.config)}
    agent.stop()
    thread.stop()


class Run:
    """One `channel-agent reconnect ...` process whose stdout starts with the consent URL."""

    def __init__(self, world, *args: str, command: list | None = None) -> None:
        self.proc = subprocess.Popen(
            [*(command or [BIN / "channel-agent"]), "reconnect", *args, "--config",
             world["config"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.url = self.proc.stdout.readline().strip()

    def answer(self, text: str) -> tuple[int, str, str]:
        out, err = self.proc.communicate(text + "\n", timeout=60)
        return self.proc.returncode, out, err


def cli(world, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "channel-agent", "reconnect", *args, "--config", world["config"]],
                          capture_output=True, text=True, timeout=60, env=env)


def token_files(world, name: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in world["tmp"].iterdir() if p.name.startswith(name)
            or p.name.startswith(f".{name}")}


def test_no_browser_reconnect_and_the_agent_sees_it_at_once(world):
    agent, sim = world["agent"], world["sim"]
    assert agent.sample("channel_credential_valid", "paste-na") == 0
    before = token_files(world, "paste-na")
    run = Run(world, "amazon_ads", "--account", "paste-na", "--no-browser", "--json")
    assert run.url.startswith(sim.endpoints()["authorize_url"] + "?")
    code, out, err = run.answer(consent(run.url, "paste-na"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["result"] == "reconnected" and doc["missing_targets"] == []
    assert (doc["agent"]["before"]["state"], doc["agent"]["after"]["state"]) == (
        "invalid", "valid")
    new = sim.account("paste-na").refresh_token
    assert (world["tmp"] / "paste-na.token").read_text() == new + "\n"
    assert Path(doc["backup"]).read_text() == before["paste-na.token"]
    assert new not in out + err and "Atzr|" not in out + err
    # the running agent, not restarted, reports the account valid and reconnected
    assert agent.sample("channel_credential_valid", "paste-na") == 1
    reconnected = agent.sample("channel_credential_reconnected_timestamp_seconds", "paste-na")
    assert reconnected is not None and abs(reconnected - time.time()) < 60
    agent.recheck("paste-na")  # the agent's own later writes keep the reconnect
    assert agent.sample("channel_credential_reconnected_timestamp_seconds",
                        "paste-na") == reconnected


def test_declined_consent_and_wrong_state_change_nothing(world):
    before = token_files(world, "decline-eu")
    run = Run(world, "amazon_ads", "--account", "decline-eu", "--no-browser")
    code, out, err = run.answer(consent(run.url, None))
    assert code == 1 and "declined" in err, err
    run = Run(world, "amazon_ads", "--account", "decline-eu", "--no-browser")
    location = consent(run.url, "decline-eu")
    forged = location.replace("state=", "state=x")
    code, out, err = run.answer(forged)
    assert code == 1 and "state does not match" in err, err
    assert token_files(world, "decline-eu") == before


def test_a_missing_expected_profile_stores_nothing(world):
    before = token_files(world, "removed-na")
    run = Run(world, "amazon_ads", "--account", "removed-na", "--no-browser")
    code, out, err = run.answer(consent(run.url, "removed-na"))
    assert code == 1
    assert "1005" in out and "MISSING: expected profile 1004" in out
    assert "permissions problem" in err and "--accept-missing-targets" in err
    assert token_files(world, "removed-na") == before


def test_a_token_from_the_environment_is_printed_only_when_asked(world):
    refused = cli(world, "amazon_ads", "--account", "env-na", "--no-browser")
    assert refused.returncode == 2 and "--show-token" in refused.stderr
    assert refused.stdout == ""  # no consent was asked for
    files = sorted(p.name for p in world["tmp"].iterdir())
    run = Run(world, "amazon_ads", "--account", "env-na", "--no-browser", "--show-token")
    code, out, err = run.answer(consent(run.url, "env-na"))
    assert code == 0, err
    assert world["sim"].account("env-na").refresh_token in out
    assert f"environment variable {ENV_VAR}" in out
    assert sorted(p.name for p in world["tmp"].iterdir()) == files


def test_link_completed_by_the_running_agent(world):
    agent = world["agent"]
    callback = f"{agent.url}/oauth/callback"
    made = cli(world, "amazon_ads", "--account", "link-fe", "--link", "--redirect-uri",
               callback, "--json")
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)
    assert link["result"] == "link_created" and link["agent"]["ready"] is True
    pending = json.loads(cli(world, "--pending", "--json").stdout)
    assert [(p["account"], p["status"]) for p in pending] == [("link-fe", "open")]
    assert "code_verifier" not in json.dumps(pending)

    location = consent(link["consent_url"], "link-fe")  # the merchant clicks Allow
    assert location.startswith(callback + "?")
    page = httpx.get(location, timeout=30)
    assert page.status_code == 200 and "Account reconnected" in page.text
    assert agent.sample("channel_credential_valid", "link-fe") == 1
    assert httpx.get(location, timeout=30).status_code == 409  # used once
    listed = cli(world, "--pending")
    assert "succeeded" in listed.stdout

    made = cli(world, "amazon_ads", "--account", "link-fe", "--link", "--redirect-uri",
               callback, "--json")
    url = json.loads(made.stdout)["consent_url"]
    cancelled = cli(world, "amazon_ads", "--account", "link-fe", "--cancel", "--json")
    assert json.loads(cancelled.stdout)["cancelled"] == 1
    page = httpx.get(consent(url, "link-fe"), timeout=30)
    assert page.status_code == 410 and "withdrawn" in page.text


def test_a_link_needs_a_redirect_uri_that_reaches_the_agent(world):
    wrong_path = cli(world, "amazon_ads", "--account", "link-fe", "--link", "--redirect-uri",
                     "https://agent.example.com/callback")
    assert wrong_path.returncode == 2 and "/oauth/callback" in wrong_path.stderr
    default = cli(world, "amazon_ads", "--account", "link-fe", "--link")  # loopback :8765
    assert default.returncode == 2 and "not the agent's" in default.stderr
    assert wrong_path.stdout == default.stdout == ""


def test_list_shows_what_needs_reconnecting_with_the_command(world):
    # a shell whose PATH finds this channel-agent (see test_cli_first_contact for the other)
    activated = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = cli(world, "--list", "--json", env=activated)
    assert result.returncode == 0, result.stderr
    rows = {row["account"]: row for row in json.loads(result.stdout)}
    assert "profile(s) not reachable: 1004" in rows["removed-na"]["why"]
    assert rows["crash-na"]["why"] == ["credential invalid (invalid_grant)"]
    assert rows["crash-na"]["command"] == (
        f"channel-agent reconnect amazon_ads --account crash-na --config {world['config']}")
    assert "decline-eu" not in rows  # valid
    table = cli(world, "--list").stdout
    assert "crash-na" in table and "channel-agent reconnect amazon_ads" in table


def test_killed_between_temp_file_and_rename_the_old_token_is_intact(world):
    token = world["tmp"] / "crash-na.token"
    old = token.read_text()
    marker = world["tmp"] / "crash.marker"
    run = Run(world, "amazon_ads", "--account", "crash-na", "--no-browser",
              command=[sys.executable, "-c", CRASH_WRAPPER, str(token), str(marker)])
    run.proc.stdin.write(consent(run.url, "crash-na") + "\n")
    run.proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert run.proc.poll() is None and time.monotonic() < deadline, run.proc.stderr.read()
        time.sleep(0.05)
    temp = Path(marker.read_text())
    assert temp.read_text().strip() == world["sim"].account("crash-na").refresh_token
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.communicate(timeout=10)
    assert token.read_text() == old
    backups = [p for p in world["tmp"].iterdir() if p.name.startswith("crash-na.token.")]
    assert [p.read_text() for p in backups] == [old]
    assert world["agent"].recheck("crash-na")["after"]["reason"] == "invalid_grant"

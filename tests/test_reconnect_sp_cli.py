"""`channel-agent reconnect amazon_sp` as a real process, beside a real agent, against the SP-API
simulator: Seller Central's consent page, its ``spapi_oauth_code`` redirect, the code exchange
at Login with Amazon, the verification against ``getMarketplaceParticipations``, and the token
stored atomically with a backup.

The browser is tests/fake_browser.py, as for Amazon Ads: in the local mode it is $BROWSER; in
the paste mode its redirect goes to the command's standard input; with --link to the agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from channel_agent_amazon_ads.simulator import SimulatorThread
from channel_agent_amazon_sp.simulator import SimSeller, SpSimulator

from tests.fake_browser import consent
from tests.helpers import BIN, free_port, start_agent
from tests.test_reconnect_cli import Run, cli, token_files

pytestmark = pytest.mark.integration

US, CA, DE, JP = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2", "A1PA6795UKMFR9", "A1VC38T7YXB528"
SELLERS = {  # name -> (region, marketplaces, scenario)
    "paste-na": ("na", [US], "revoked"),
    "local-eu": ("eu", [DE], "revoked"),
    "decline-na": ("na", [US], "healthy"),
    "link-fe": ("fe", [JP], "revoked"),
    "removed-na": ("na", [US, CA], "marketplace_removed"),
}
APPLICATION_ID = "amzn1.sp.solution.reconnect-test"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconnect-sp")
    sim = SpSimulator("amzn1.application-oa2-client.sp", "sp-secret-for-reconnect",
                      APPLICATION_ID)
    (tmp / "client_secret").write_text(sim.client_secret + "\n")
    accounts = []
    for name, (region, marketplaces, scenario) in SELLERS.items():
        seller = sim.add_seller(SimSeller(name, region, marketplaces, scenario))
        (tmp / f"{name}.token").write_text(seller.refresh_token + "\n")
        accounts.append({"name": name, "region": region, "refresh_token_file": f"{name}.token",
                         "expected_marketplaces": marketplaces})
    thread = SimulatorThread(sim)  # runs any simulator with async start/stop
    thread.start()
    agent = start_agent(tmp, {"channels": {"amazon_sp": {
        "client_id": sim.client_id, "client_secret_file": "client_secret",
        "application_id": APPLICATION_ID, "endpoints": sim.endpoints(), "accounts": accounts,
    }}})
    for name in SELLERS:
        agent.recheck(name, channel="amazon_sp")
    yield {"sim": sim, "agent": agent, "tmp": tmp, "config": str(agent.config)}
    agent.stop()
    thread.stop()


def assert_stored(world, name: str, before: dict[str, str]) -> str:
    """The seller's new token is in its file, the old one in a backup beside it; the new one."""
    new = world["sim"].sellers[name].refresh_token
    assert new + "\n" != before[f"{name}.token"]
    after = token_files(world, name)
    assert after[f"{name}.token"] == new + "\n"
    backups = {k: v for k, v in after.items() if k.startswith(f"{name}.token.")}
    assert list(backups.values()) == [before[f"{name}.token"]]
    assert not [k for k in after if k.startswith(".")]  # no temp file left behind
    return new


def test_paste_mode_through_seller_central(world):
    agent, sim = world["agent"], world["sim"]
    assert agent.sample("channel_credential_valid", "paste-na") == 0
    before = token_files(world, "paste-na")
    run = Run(world, "amazon_sp", "--account", "paste-na", "--no-browser", "--json")
    assert run.url.startswith(sim.endpoints()["authorize_url"] + "?")
    assert f"application_id={APPLICATION_ID}" in run.url and "code_challenge" not in run.url
    location = consent(run.url, "paste-na")
    assert "spapi_oauth_code=" in location and "selling_partner_id=" in location
    code, out, err = run.answer(location)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["result"] == "reconnected"
    assert (doc["agent"]["before"]["state"], doc["agent"]["after"]["state"]) == (
        "invalid", "valid")
    new = assert_stored(world, "paste-na", before)
    assert new not in out + err and "Atzr|" not in out + err
    assert agent.sample("channel_credential_valid", "paste-na") == 1
    assert agent.sample("channel_target_accessible", "paste-na", target=US) == 1


def test_local_mode_with_a_browser(world):
    before = token_files(world, "local-eu")
    page = world["tmp"] / "browser-page.html"
    browser = Path(__file__).with_name("fake_browser.py")
    env = os.environ | {"BROWSER": f"{sys.executable} {browser} %s",
                        "FAKE_BROWSER_ACCOUNT": "local-eu", "FAKE_BROWSER_PAGE": str(page)}
    result = subprocess.run(
        [BIN / "channel-agent", "reconnect", "amazon_sp", "--account", "local-eu",
         "--config", world["config"], "--timeout", "30s",
         "--redirect-uri", f"http://127.0.0.1:{free_port()}/oauth/callback"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "before: invalid (invalid_grant)" in result.stdout
    assert "after:  valid" in result.stdout
    assert page.read_text().startswith("200\n")
    assert_stored(world, "local-eu", before)
    assert world["agent"].sample("channel_credential_valid", "local-eu") == 1


def test_declined_consent_and_wrong_state_change_nothing(world):
    before = token_files(world, "decline-na")
    run = Run(world, "amazon_sp", "--account", "decline-na", "--no-browser")
    code, out, err = run.answer(consent(run.url, None))
    assert code == 1 and "declined" in err, err
    run = Run(world, "amazon_sp", "--account", "decline-na", "--no-browser")
    location = consent(run.url, "decline-na")
    code, out, err = run.answer(location.replace("state=", "state=x"))
    assert code == 1 and "state does not match" in err, err
    assert token_files(world, "decline-na") == before
    code_sent = parse_qs(urlsplit(location).query)["spapi_oauth_code"][0]
    assert code_sent in world["sim"].codes  # never exchanged


def test_a_missing_expected_marketplace_stores_nothing(world):
    before = token_files(world, "removed-na")
    run = Run(world, "amazon_sp", "--account", "removed-na", "--no-browser")
    code, out, err = run.answer(consent(run.url, "removed-na"))
    assert code == 1
    assert out.startswith("Marketplaces the new credential reaches (1):\nMARKETPLACE ")
    assert US in out and f"MISSING: expected marketplace {CA}" in out
    assert "expected marketplace(s)" in err and "--accept-missing-targets" in err
    assert token_files(world, "removed-na") == before


def test_the_deprecated_accept_missing_profiles_still_accepts(world):
    """--accept-missing-profiles, the flag's name before targets, is a hidden alias."""
    assert "--accept-missing-profiles" not in cli(world, "--help").stdout
    before = token_files(world, "removed-na")
    run = Run(world, "amazon_sp", "--account", "removed-na", "--no-browser", "--json",
              "--accept-missing-profiles")
    code, out, err = run.answer(consent(run.url, "removed-na"))
    assert code == 0, err
    assert "deprecated: use --accept-missing-targets" in err
    doc = json.loads(out)
    assert (doc["target_kind"], doc["missing_targets"]) == ("marketplace", [CA])
    assert [(t["id"], t["expected"]) for t in doc["targets"]] == [(US, True)]
    assert_stored(world, "removed-na", before)


def test_link_completed_by_the_running_agent(world):
    agent = world["agent"]
    callback = f"{agent.url}/oauth/callback"
    before = token_files(world, "link-fe")
    made = cli(world, "amazon_sp", "--account", "link-fe", "--link", "--redirect-uri",
               callback, "--json")
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)
    assert link["result"] == "link_created"
    assert link["consent_url"].startswith(world["sim"].endpoints()["authorize_url"] + "?")

    location = consent(link["consent_url"], "link-fe")  # the seller clicks Confirm
    assert location.startswith(callback + "?") and "spapi_oauth_code=" in location
    page = httpx.get(location, timeout=30)
    assert page.status_code == 200 and "Account reconnected" in page.text
    assert_stored(world, "link-fe", before)
    assert agent.sample("channel_credential_valid", "link-fe") == 1
    assert httpx.get(location, timeout=30).status_code == 409  # used once

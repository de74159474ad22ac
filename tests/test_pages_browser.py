"""The operator's pages as a person sees them: Debian's chromium, headless, driven by Playwright
against a real agent and the Amazon Ads simulator.

Playwright's Python package only drives the browser: it is pointed at the system's chromium
(``executable_path``) and never downloads one. One browser serves the whole module; each test
opens its own context (JavaScript off, to show the pages need none). The screenshots land in a
temporary directory; ``CHANNEL_AGENT_SCREENSHOTS=docs`` writes them to docs/ for the README.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from channel_agent_amazon_ads.simulator import Simulator, SimulatorThread
from playwright.sync_api import Browser, Page, sync_playwright

from agent.channel import Account, CheckResult
from agent.checks.scheduler import offset
from agent.config.loader import load_config
from agent.plugins import load_plugins
from agent.storage.fleet import Fleet
from agent.storage.freshness import DataFreshness
from agent.storage.state import StateStore
from tests.fake_browser import consent
from tests.helpers import REPO, Agent, free_port, require_program, write_sim_config
from tests.tlsfiles import bcrypt_hash

pytestmark = pytest.mark.integration

# Known to work as root in a container; Playwright adds --headless and a fresh profile.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "PLANTED-web-password-browser-3e1d"
CLIENT_SECRET = "PLANTED-client-secret-browser-93ab"
REVOKED = [f"revoked-{i}" for i in range(5)]
UNVERIFIED = ["throttled-0", "throttled-1"]
VALID = [f"merchant-{i:03d}" for i in range(99)] + ["cycle-na"]
STALE = VALID[:4]  # their data set's last sync is two days old (max_age 36h)
VIEWPORT = {"width": 1400, "height": 1000}


def unchecked_names(count: int) -> list[str]:
    """Names the scheduler (check_interval 1h) does not check in the test's first 20 minutes."""
    names = (f"new-merchant-{i:02d}" for i in range(100))
    return [name for name in names
            if offset(Account("amazon_ads", name, "na"), 3600) > 1200][:count]


UNCHECKED = unchecked_names(3)


@pytest.fixture(scope="module")
def browser():
    chromium = require_program("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    sim = Simulator(client_secret=CLIENT_SECRET)
    thread = SimulatorThread(sim)
    thread.start()
    scenarios = {name: ("na", "healthy") for name in VALID + UNCHECKED}
    scenarios |= {name: ("eu", "revoked") for name in REVOKED}
    scenarios |= {name: ("fe", "server_error") for name in UNVERIFIED}
    freshness = {"freshness_sources": {"pipeline": {"type": "heartbeat"}},
                 "datasets": {"sp_campaigns_daily": {"source": "pipeline", "max_age": "36h"}}}
    port = free_port()
    config = write_sim_config(tmp, sim, CLIENT_SECRET, scenarios, freshness,
                              check_interval="1h", check_timeout="4s")
    data = json.loads(config.read_text())
    data["channels"]["amazon_ads"]["redirect_uri"] = f"http://127.0.0.1:{port}/oauth/callback"
    config.write_text(json.dumps(data))
    web = tmp / "web.yml"
    web.write_text(f"basic_auth_users:\n  sre: '{bcrypt_hash(PASSWORD)}'\n")
    agent = Agent(config, port, tmp / "agent.log",
                  args=("--web.config.file", str(web), "--web.read-without-auth"),
                  auth=("sre", PASSWORD))
    restore_checked_fleet(config)
    agent.start()
    with ThreadPoolExecutor(4) as pool:  # these, checked for real
        list(pool.map(agent.recheck, ["cycle-na", *REVOKED, *UNVERIFIED]))
    yield {"sim": sim, "agent": agent, "tmp": tmp}
    agent.stop()
    thread.stop()


def restore_checked_fleet(config: Path) -> None:
    """The state file of an agent that checked the healthy merchants and received their
    heartbeats: the agent restores it at start (checking 100 accounts through the API would
    take longer than every test here)."""
    plugins = load_plugins()
    loaded = load_config(config, plugins.channels)
    store = StateStore(loaded.agent.state_path)
    fleet = Fleet(store)
    fleet.configure(loaded)
    now = time.time()
    for name in VALID:
        fleet.record(fleet.accounts[("amazon_ads", name)], CheckResult(valid=True))
    for name in VALID + REVOKED:
        store.save_freshness(DataFreshness(
            "amazon_ads", name, "sp_campaigns_daily", source="pipeline", recorded=now,
            last_updated=now - (2 * 86400 if name in STALE else 3600)))
    store.close()


def open_page(browser: Browser, url: str, *, credentials: bool = False) -> Page:
    context = browser.new_context(
        viewport=VIEWPORT, java_script_enabled=False,
        http_credentials={"username": "sre", "password": PASSWORD} if credentials else None)
    page = context.new_page()
    page.goto(url)
    return page


def shown_accounts(page: Page) -> list[str]:
    return page.locator("#accounts tr[data-state] td:first-child").all_inner_texts()


def screenshot(page: Page, name: str, tmp: Path, *, full_page: bool = False) -> None:
    where = REPO / "docs" if os.environ.get("CHANNEL_AGENT_SCREENSHOTS") == "docs" else tmp
    page.screenshot(path=where / name, full_page=full_page)
    assert (where / name).read_bytes().startswith(b"\x89PNG")


def test_the_summary_counts_each_state_and_stale_data(world, browser):
    page = open_page(browser, world["agent"].url)
    cells = page.locator("table.counts tr").nth(1).locator("td").all_inner_texts()
    assert cells == ["amazon_ads", "5", "2", "3", "100", "110"]
    stale = page.locator(".card", has_text="stale data sets")
    assert stale.locator(".n").inner_text() == "4" and "on 4 account(s)" in stale.inner_text()
    assert "Channel Health Agent" in page.title()
    screenshot(page, "landing-page.png", world["tmp"])
    page.context.close()


def test_filtering_to_invalid_shows_exactly_the_invalid_accounts(world, browser):
    page = open_page(browser, world["agent"].url)
    page.select_option("#f-state", "invalid")
    page.click("form.filters button")
    assert "state=invalid" in page.url
    assert sorted(shown_accounts(page)) == REVOKED
    states = {page.locator("#accounts tr[data-state]").nth(i).get_attribute("data-state")
              for i in range(len(REVOKED))}
    assert states == {"invalid"}
    page.goto(world["agent"].url)
    page.click("table.counts a[title='unverified']")  # each count links to its list
    assert sorted(shown_accounts(page)) == UNVERIFIED
    page.goto(world["agent"].url + "/?stale=yes")
    assert sorted(shown_accounts(page)) == STALE
    page.context.close()


def test_paging_through_the_list_with_stable_links(world, browser):
    page = open_page(browser, world["agent"].url)
    first = shown_accounts(page)
    assert len(first) == 100 and page.locator("#shown").inner_text().startswith("100 of 110")
    assert set(first[:5]) == set(REVOKED)  # the broken ones first
    page.click("a[rel=next]")
    second = shown_accounts(page)
    assert len(second) == 10 and not set(first) & set(second)
    assert set(first) | set(second) == set(VALID + REVOKED + UNVERIFIED + UNCHECKED)
    pasted = open_page(browser, page.url)  # the URL as pasted into a ticket
    assert shown_accounts(pasted) == second
    pasted.context.close()
    page.click("a[rel=prev]")
    assert shown_accounts(page) == first
    page.context.close()


def test_the_account_page_shows_a_revoke_and_a_reconnect(world, browser):
    agent, sim = world["agent"], world["sim"]
    url = f"{agent.url}/accounts/amazon_ads/cycle-na"
    sim.set_scenario("cycle-na", "revoked")
    assert agent.recheck("cycle-na")["after"]["state"] == "invalid"
    page = open_page(browser, url, credentials=True)
    assert "channel-agent reconnect amazon_ads --account cycle-na --config" in (
        page.locator("#reconnect-command").inner_text())
    assert page.locator("a.runbook").all_inner_texts() == ["ChannelCredentialInvalid"]
    screenshot(page, "account-page.png", world["tmp"], full_page=True)  # what on-call sees
    page.click("#reconnect-link button")
    consent_url = page.locator("#consent-url").inner_text().strip()
    location = consent(consent_url, "cycle-na")  # the merchant clicks Allow
    done = httpx.get(location, timeout=30)
    assert done.status_code == 200 and "Account reconnected" in done.text
    page.goto(url)
    changes = page.locator("#history tr td:nth-child(2)").all_inner_texts()
    assert [c.strip() for c in changes] == ["invalid → valid", "reconnected", "valid → invalid",
                                             "never checked → valid"]
    assert page.locator("h2 .badge").first.inner_text() == "valid"
    page.context.close()


def test_the_reconnect_link_button_needs_credentials(world, browser):
    agent = world["agent"]
    page = open_page(browser, f"{agent.url}/accounts/amazon_ads/revoked-0")  # reading is open
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#reconnect-link button")
    assert answer.value.status == 401
    assert page.locator("#consent-url").count() == 0  # the browser shows no link
    db = sqlite3.connect(f"file:{world['tmp'] / 'var' / 'agent.db'}?mode=ro", uri=True)
    links = db.execute("SELECT count(*) FROM reconnect_links WHERE account = 'revoked-0'")
    assert links.fetchone()[0] == 0
    db.close()
    page.context.close()

"""`channel-agent reconnect` for Shopify as a real process: what it prints speaks of the
channel's targets (scopes) and of a credential, not of Amazon's profiles and refresh tokens.

The Shopify simulator consents at once: the test plays the browser with tests/fake_browser.py's
``consent`` (its extra parameter is ignored there)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from channel_agent_amazon_ads.simulator import SimulatorThread
from channel_agent_shopify.simulator import SimShop
from channel_agent_shopify.simulator import Simulator as ShopifySimulator

from tests.fake_browser import consent
from tests.helpers import BIN

pytestmark = pytest.mark.integration

AMAZON_WORDS = re.compile(r"refresh token|profile|Amazon", re.IGNORECASE)


@pytest.fixture
def shopify(tmp_path):
    sim = ShopifySimulator("cli-shopify-app", "cli-shopify-secret")
    # write_products covers the required read_products (Shopify: write implies read)
    shop = SimShop("acme.myshopify.com", ["read_orders", "write_products", "read_themes"],
                   "uninstalled")
    sim.add_shop(shop)
    (tmp_path / "client_secret").write_text(sim.client_secret)
    (tmp_path / "acme.access_token").write_text("shpat_old\n")
    with SimulatorThread(sim):  # type: ignore[arg-type]
        config = {"agent": {"state_path": "agent.db"},
                  "channels": {"shopify": {
                      "client_id": sim.client_id, "client_secret_file": "client_secret",
                      "accounts": [{"name": "acme", "shop": shop.domain,
                                    "admin_url": sim.shop_url(shop.domain),
                                    "access_token_file": "acme.access_token",
                                    "required_scopes": ["read_orders", "read_products"]}]}}}
        (tmp_path / "config.yaml").write_text(json.dumps(config))
        yield sim, shop, tmp_path


def reconnect(tmp_path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "channel-agent", "reconnect", "shopify", "--account", "acme", *args,
         "--agent-url", "http://127.0.0.1:9", "--config", str(tmp_path / "config.yaml")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_paste_reconnect_names_scopes_and_the_credential(shopify):
    _, shop, tmp_path = shopify
    proc = reconnect(tmp_path, "--no-browser")
    url = proc.stdout.readline().strip()
    out, err = proc.communicate(consent(url, "acme") + "\n", timeout=60)
    assert proc.returncode == 0, err
    assert (tmp_path / "acme.access_token").read_text().strip() == shop.access_token
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert "Scopes the new credential reaches (3):" in out and "SCOPE" in rows
    # EXPECTED: the required scopes, write_products standing for read_products
    assert [rows[s][-1] for s in ("read_orders", "write_products")] == ["yes", "yes"]
    assert rows["read_themes"][-1] != "yes"
    assert "new credential: fingerprint" in out and "the credential's age starts now" in out
    assert "Reconnecting shopify account acme." in err  # no region
    # the channel's own closing note may name an expiring token's refresh token
    note = next(line for line in out.splitlines() if line.startswith("Shopify delivers"))
    assert not AMAZON_WORDS.search((out + err).replace(note, "")), out + err


def test_link_note_names_shopify(shopify):
    _, _, tmp_path = shopify
    proc = reconnect(tmp_path, "--link", "--redirect-uri",
                     "https://agent.example.com/oauth/callback")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "/admin/oauth/authorize?" in out
    assert "When they approve, Shopify sends their browser" in err
    assert not AMAZON_WORDS.search(out + err), out + err

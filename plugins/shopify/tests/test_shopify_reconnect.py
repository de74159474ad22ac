"""ShopifyReconnector: the install/grant flow against the simulator, and the redirect's hmac."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from channel_agent_shopify.reconnect import redirect_hmac
from channel_agent_shopify.simulator import SimShop
from shopify_helpers import CLIENT_ID, REDIRECT, SCOPES, account, channel_for, ctx, shop_account

from agent.channel import ReconnectError, Secret
from agent.reconnect import new_attempt
from agent.reconnect_redirect import code_from_redirect, parse_pasted

# The worked example of Shopify's OAuth documentation (client secret "hush"), also used by
# public libraries' tests (hexdocs.pm/shopify_oauth, Shopify.OAuth.verify_hmac).
DOC_QUERY = ("code=0907a61c0c8d55e99db179b68161bc00&hmac=700e2dadb827fcc8609e9d5ce208b2e9cdaab9df0"
             "7390d2cbca10d7c328fc4bf&shop=some-shop.myshopify.com&state=0.6784241404160823"
             "&timestamp=1337178173")


def test_hmac_of_shopifys_documented_example() -> None:
    params = {k: v[0] for k, v in parse_qs(DOC_QUERY).items()}
    assert redirect_hmac(params, Secret("hush")) == params["hmac"]


async def consent(http, url: str) -> dict[str, str]:
    response = await http.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def setup(sim, tmp_path, **extra):
    shop = SimShop("acme.myshopify.com", list(SCOPES), "uninstalled")
    sim.add_shop(shop)
    channel = channel_for(sim, tmp_path, [shop_account(tmp_path, "acme", "shpat_old", **extra)])
    return shop, channel, channel.reconnector(), account(channel, "acme")


async def test_install_grant_flow_reconnects_an_uninstalled_shop(sim, tmp_path, http) -> None:
    shop, channel, reconnector, acme = setup(sim, tmp_path)
    attempt = new_attempt(reconnector, acme, REDIRECT)
    parts = urlsplit(attempt.consent_url)
    assert parts.path == "/shops/acme.myshopify.com/admin/oauth/authorize"
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {
        "client_id": CLIENT_ID, "scope": "read_orders,read_products",
        "redirect_uri": REDIRECT, "state": attempt.state}
    redirect = await consent(http, attempt.consent_url)
    code = code_from_redirect(redirect, attempt.state, reconnector)
    token = await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert token == Secret(shop.access_token)
    result = await reconnector.verify(acme, token, ctx(http))
    assert result.missing == [] and [p.id for p in result.targets] == SCOPES
    assert (await channel.check(acme, ctx(http))).valid is False  # the file still has the old


async def test_a_bad_hmac_is_refused_before_the_code_is_used(sim, tmp_path, http) -> None:
    shop, _, reconnector, acme = setup(sim, tmp_path)
    attempt = new_attempt(reconnector, acme, REDIRECT)
    redirect = await consent(http, attempt.consent_url)
    for forged in ({**redirect, "hmac": "0" * 64},
                   {**redirect, "shop": "evil.myshopify.com"},  # signed for another shop
                   {k: v for k, v in redirect.items() if k != "hmac"}):
        with pytest.raises(ReconnectError) as info:
            code_from_redirect(forged, attempt.state, reconnector)
        assert info.value.reason == "rejected" and "hmac" in info.value.message
    assert redirect["code"] in sim.codes  # never exchanged
    # a pasted bare code carries no hmac: refused; the whole pasted URL works
    params, with_url = parse_pasted(redirect["code"])
    with pytest.raises(ReconnectError):
        code_from_redirect(params, None, reconnector)
    url = REDIRECT + "?" + "&".join(f"{k}={v}" for k, v in redirect.items())
    params, with_url = parse_pasted(url)
    assert code_from_redirect(params, attempt.state, reconnector) == redirect["code"]


async def test_a_code_works_once(sim, tmp_path, http) -> None:
    _, _, reconnector, acme = setup(sim, tmp_path)
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url))["code"]
    await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    with pytest.raises(ReconnectError) as info:
        await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert info.value.reason == "code_rejected"


async def test_expiring_accounts_store_the_refresh_token(sim, tmp_path, http) -> None:
    shop, _, reconnector, acme = setup(sim, tmp_path, token_type="expiring")
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url))["code"]
    token = await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert token == Secret(shop.refresh_token)
    result = await reconnector.verify(acme, token, ctx(http))  # with the grant's access token
    assert result.refresh_token == token and result.missing == []
    assert shop.refresh_token == token.reveal()  # verifying did not consume it


async def test_verify_names_a_scope_the_merchant_did_not_grant(sim, tmp_path, http) -> None:
    shop, _, reconnector, acme = setup(sim, tmp_path)
    shop.scopes = ["read_orders"]
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url))["code"]
    token = await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert (await reconnector.verify(acme, token, ctx(http))).missing == ["read_products"]


async def test_no_client_credentials_means_no_reconnect(sim, tmp_path) -> None:
    sim.add_shop(SimShop("acme.myshopify.com", list(SCOPES)))
    channel = channel_for(sim, tmp_path, [shop_account(tmp_path, "acme", "shpat_x")],
                         client_id="")
    with pytest.raises(ReconnectError) as info:
        channel.reconnector().consent_url(account(channel, "acme"), "s", "c", REDIRECT)
    assert info.value.reason == "unsupported"


async def test_the_core_flow_stores_the_new_token_and_a_bad_hmac_changes_nothing(
        sim, tmp_path, http) -> None:
    from agent.reconnect import complete, preflight

    shop, channel, _, acme = setup(sim, tmp_path)
    token_file = tmp_path / "acme.access_token"
    reconnector = preflight(channel, acme)  # the token file is where the new token goes
    attempt = new_attempt(reconnector, acme, REDIRECT)
    redirect = await consent(http, attempt.consent_url)
    with pytest.raises(ReconnectError):
        code_from_redirect({**redirect, "timestamp": "1"}, attempt.state, reconnector)
    assert token_file.read_text() == "shpat_old"  # refused: nothing stored
    code = code_from_redirect(redirect, attempt.state, reconnector)
    outcome = await complete(channel, acme, code, attempt, ctx(http), None)
    assert token_file.read_text().strip() == shop.access_token != "shpat_old"
    assert outcome.backup is not None and outcome.backup.read_text() == "shpat_old"
    assert (await channel.check(acme, ctx(http))).valid is True  # picked up at the next check

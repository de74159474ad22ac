"""The shared Login with Amazon library on its own: what both Amazon channels rely on."""

from __future__ import annotations

import httpx
import pytest
from channel_agent_amazon_lwa.classify import expired_secret, lwa_verdict
from channel_agent_amazon_lwa.grants import code_request
from channel_agent_amazon_lwa.session import LwaTokens

from agent.channel import Account, Secret, SecretRef


@pytest.mark.parametrize("body,expired", [
    # amzn/selling-partner-api-models issue #320 (the message sits in "details")
    ({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.",
                  "details": "The LWA secret token you provided has expired."}]}, True),
    ({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.",
                  "details": ""}]}, False),
    (None, False),
])
def test_an_expired_application_secret_is_recognised(body, expired) -> None:
    assert expired_secret(body) is expired


def test_invalid_client_is_the_applications_failure() -> None:
    # the token endpoint's answer to an expired or wrong client secret
    verdict = lwa_verdict(401, {"error": "invalid_client",
                                "error_description": "Client authentication failed"})
    assert (verdict.reason, verdict.valid, verdict.client_valid) == ("invalid_client", False,
                                                                    False)


def test_a_code_grant_without_pkce_sends_no_verifier() -> None:
    client = httpx.AsyncClient()
    request = code_request(client, "https://api.amazon.com/auth/o2/token", "id", Secret("s"),
                           "ANcode", None, "https://example.com/cb")
    assert b"code_verifier" not in request.content
    assert b"code_verifier" in code_request(client, "https://api.amazon.com/auth/o2/token", "id",
                                            Secret("s"), "ANcode", "v" * 43,
                                            "https://example.com/cb").content


def test_a_rotated_token_wins_until_the_stored_one_changes(tmp_path) -> None:
    stored = tmp_path / "token"
    stored.write_text("Atzr|old")
    account = Account("amazon_sp", "acme", "na",
                      {"refresh_token": SecretRef(path=stored, source="accounts[0]")})
    tokens = LwaTokens()
    tokens.rotated["acme"] = (Secret("Atzr|old").fingerprint(), Secret("Atzr|new"))
    assert tokens.refresh_token(account).reveal() == "Atzr|new"  # not persisted yet
    stored.write_text("Atzr|reconnected")
    assert tokens.refresh_token(account).reveal() == "Atzr|reconnected"
    assert "acme" not in tokens.rotated

"""The landing page, the account page and the paged JSON API, in process (the browser tests,
tests/test_pages_browser.py, drive the same pages through Chromium)."""

from __future__ import annotations

import html
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.channel import CheckResult
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.web.appkeys import PageSettings
from agent.web.server import make_app
from tests.fakes import FakeChannel, FakePlugin

ACCOUNTS = ("a-valid", "b-revoked", "c-forbidden", "d-throttled", "e-unchecked", "f-valid")


@pytest.fixture
async def client(fake_config):
    service = AgentService(fake_config(accounts=ACCOUNTS),
                           load_plugins([FakePlugin()], entry_points=False))
    FakeChannel.script = {
        "b-revoked": CheckResult(valid=False, reason="invalid_grant", detail="revoked <b>x</b>"),
        "c-forbidden": CheckResult(valid=False, reason="forbidden"),
        "d-throttled": CheckResult(valid=None, reason="throttled"),
    }
    for name in ACCOUNTS:
        if name != "e-unchecked":
            await service.scheduler.check_now(service.find_account("fake", name))
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    client.service = service
    yield client
    await client.close()
    await service.stop()


async def _json(client, path, status=200, **params):
    response = await client.get(path, params=params)
    assert response.status == status, await response.text()
    return await response.json()


async def test_accounts_api_filters_pages_and_summarises(client):
    doc = await _json(client, "/api/v1/accounts", state="invalid")
    assert [a["account"] for a in doc["accounts"]] == ["b-revoked", "c-forbidden"]  # broken first
    assert doc["total"] == 2 and doc["next_cursor"] is None
    assert doc["summary"]["by_channel"]["fake"] == {
        "invalid": 2, "unverified": 1, "pending": 1, "valid": 2, "total": 6}
    assert doc["summary"]["last_cycle_finished"] is None  # e-unchecked was never checked

    first = await _json(client, "/api/v1/accounts", limit="4")
    assert [a["state"] for a in first["accounts"]] == ["invalid", "invalid", "unverified",
                                                       "pending"]
    second = await _json(client, "/api/v1/accounts", limit="4", cursor=first["next_cursor"])
    assert [a["account"] for a in second["accounts"]] == ["a-valid", "f-valid"]
    assert second["next_cursor"] is None
    back = await _json(client, "/api/v1/accounts", limit="4", before=second["prev_cursor"])
    assert back["accounts"] == first["accounts"]

    status = await _json(client, "/api/v1/status", reason="throttled", q="D-THR")
    assert [a["account"] for a in status["accounts"]] == ["d-throttled"]
    assert status["agent"]["version"] and status["summary"]["accounts"] == 6
    assert status["accounts"][0]["broken_since"] is not None


@pytest.mark.parametrize(("params", "field"), [
    ({"state": "broken"}, "state"), ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"label": "merchant"}, "label"),
    ({"stale": "maybe"}, "stale"), ({"stat": "invalid"}, "stat"),
])
async def test_a_bad_query_is_refused_naming_the_parameter(client, params, field):
    for path in ("/api/v1/accounts", "/api/v1/status"):
        doc = await _json(client, path, status=400, **params)
        assert doc["field"] == field and f"'{field}'" in doc["error"]
    page = await client.get("/", params=params)
    assert page.status == 400 and f"query parameter &#x27;{field}&#x27;" in await page.text()


async def test_the_landing_page_links_every_count_to_its_list(client):
    text = await (await client.get("/")).text()
    counts = dict(re.findall(r'href="/\?channel=fake&amp;state=(\w+)"[^>]*>(\d+)<', text))
    assert counts == {"invalid": "2", "unverified": "1", "pending": "1", "valid": "2"}
    rows = re.findall(r'<tr data-state="(\w+)"><td><a href="/accounts/fake/([\w-]+)"', text)
    assert rows[:2] == [("invalid", "b-revoked"), ("invalid", "c-forbidden")]
    assert len(rows) == 6 and "revoked <b>" not in text
    filtered = await (await client.get("/", params={"state": "invalid"})).text()
    assert re.findall(r'<tr data-state="(\w+)"', filtered) == ["invalid", "invalid"]
    assert '<option value="invalid" selected>' in filtered


async def test_the_account_page_says_what_happened_and_what_to_do(client):
    service = client.service
    FakeChannel.script["a-valid"] = CheckResult(valid=False, reason="invalid_grant",
                                                detail="revoked")
    await service.scheduler.check_now(service.find_account("fake", "a-valid"))
    page = await (await client.get("/accounts/fake/a-valid")).text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page.replace('id="history"', ">HISTORY<")))
    history = text[text.index("HISTORY"):]
    assert history.index("valid → invalid") < history.index("never checked → valid")
    assert "/ChannelCredentialInvalid.md\"" in page
    assert "Channel fake has no reconnect flow; what it says to do:" in text
    assert "No consent-link button: channel fake has no reconnect flow" in text
    missing = await client.get("/accounts/fake/nobody")
    assert missing.status == 404 and "unknown channel/account" in await missing.text()


async def test_a_reconnect_link_is_not_made_for_another_site(client):
    evil = await client.post("/accounts/fake/b-revoked/reconnect-link",
                             headers={"Origin": "https://evil.example"})
    assert evil.status == 403
    same = await client.post("/accounts/fake/b-revoked/reconnect-link")
    assert same.status == 409 and "no reconnect flow" in await same.text()


async def test_runbook_links_follow_the_configured_base_url(fake_config):
    service = AgentService(fake_config(accounts=("a1",)),
                           load_plugins([FakePlugin()], entry_points=False))
    FakeChannel.script = {"a1": CheckResult(valid=None, reason="timeout")}
    await service.scheduler.check_now(service.find_account("fake", "a1"))
    app = make_app(service, pages=PageSettings(runbook_base_url="https://wiki.example/rb/"))
    async with TestClient(TestServer(app)) as client:
        text = await (await client.get("/accounts/fake/a1")).text()
    assert 'href="https://wiki.example/rb/ChannelCredentialUnverified.md"' in text
    await service.stop()

"""The reconnect flow in-process, against the Amazon simulator over loopback (no browser).

The tests play the browser: GET the consent URL with ``sim_account`` (or ``sim_decline``),
take the redirect's Location and deliver it to the local callback, to the paste parser, or
to the agent's /oauth/callback.
"""

from __future__ import annotations

import io
import json
import os
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from channel_agent_amazon_ads.simulator import SimAccount, Simulator
from click.testing import CliRunner

from agent.channel import CheckContext, CheckResult, ReconnectError, Secret
from agent.cli import cli
from agent.config.loader import Config, build_config
from agent.plugins import load_plugins
from agent.reconnect import (
    CALLBACK_PATH,
    TargetsMissing,
    complete,
    create_link,
    new_attempt,
    preflight,
)
from agent.reconnect_redirect import LocalCallback, code_from_redirect, parse_pasted, read_pasted
from agent.service import AgentService
from agent.storage.state import AccountState, Grant, StateStore
from agent.web.server import make_app
from tests.helpers import free_port

LINK_REDIRECT = f"https://agent.example.com{CALLBACK_PATH}"


class World:
    def __init__(self, sim: Simulator, config: Config, tmp: Path) -> None:
        self.sim, self.config, self.tmp = sim, config, tmp
        self.channel = config.channels["amazon_ads"]
        self.store = StateStore(tmp / "cli.db")

    def account(self, name: str):
        return next(a for a in self.channel.accounts if a.name == name)

    def token_file(self, name: str) -> Path:
        return self.tmp / f"{name}.token"


@pytest.fixture
async def world(tmp_path):
    sim = Simulator(client_secret="sim-secret")
    accounts = []
    for name, region, profiles, scenario in (("revoked", "na", [11, 12], "revoked"),
                                             ("removed", "eu", [21, 22], "profile_removed"),
                                             ("env", "na", [31], "revoked")):
        account = SimAccount.create(name, region, profiles, scenario)
        sim.add_account(account)
        entry = {"name": name, "region": region, "expected_profiles": profiles}
        if name == "env":
            entry["refresh_token"] = "${ENV_TOKEN}"
        else:
            (tmp_path / f"{name}.token").write_text(account.refresh_token + "\n")
            entry["refresh_token_file"] = f"{name}.token"
        accounts.append(entry)
    (tmp_path / "client_secret").write_text("sim-secret\n")
    await sim.start()
    data = {
        "agent": {"state_path": "agent.db", "check_interval": "1h", "check_timeout": "5s"},
        "channels": {"amazon_ads": {
            "client_id": sim.client_id, "client_secret_file": "client_secret",
            "endpoints": sim.endpoints(), "accounts": accounts,
        }},
    }
    environ = {"ENV_TOKEN": sim.account("env").refresh_token}
    config = build_config(data, load_plugins().channels, base_dir=tmp_path, environ=environ)
    (tmp_path / "config.yaml").write_text(json.dumps(data))  # for the command line
    world = World(sim, config, tmp_path)
    yield world
    world.store.close()
    await sim.stop()


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def browse(http: httpx.AsyncClient, consent_url: str, sim_account: str | None) -> str:
    """The browser on the consent page: the Location it is redirected to."""
    extra = "sim_decline=1" if sim_account is None else f"sim_account={sim_account}"
    response = await http.get(f"{consent_url}&{extra}", follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def ctx(http: httpx.AsyncClient) -> CheckContext:
    return CheckContext(http=http, deadline=time.monotonic() + 10)


# --- local flow ---------------------------------------------------------------------------


async def local_flow(world, http, sim_account: str | None):
    """The local flow up to the code, for account "revoked": the attempt, the page the
    browser ends on, and what the wait ended with (the code, or the ReconnectError)."""
    account = world.account("revoked")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    reconnector = preflight(world.channel, account)
    attempt = new_attempt(reconnector, account, redirect_uri)
    server = LocalCallback(redirect_uri, attempt.state, reconnector)
    await server.start()
    try:
        page = await http.get(await browse(http, attempt.consent_url, sim_account))
        try:
            ended: str | ReconnectError = await server.wait(5)
        except ReconnectError as err:
            ended = err
    finally:
        await server.stop()
    return attempt, page, ended


async def test_local_flow_stores_the_token_atomically_and_records_the_grant(world, http):
    account = world.account("revoked")
    old = world.token_file("revoked").read_text()
    attempt, page, code = await local_flow(world, http, "revoked")
    assert page.status_code == 200 and "You can close this tab" in page.text
    outcome = await complete(world.channel, account, code, attempt, ctx(http), world.store)

    new = world.sim.account("revoked").refresh_token
    assert world.token_file("revoked").read_text() == new + "\n" != old
    assert stat.S_IMODE(world.token_file("revoked").stat().st_mode) == 0o600
    assert outcome.backup is not None and outcome.backup.read_text() == old
    assert outcome.stored_in == world.token_file("revoked")
    assert [p.id for p in outcome.result.targets] == ["11", "12"]
    grant = world.store.load_grant("amazon_ads", "revoked")
    assert grant == outcome.grant and grant.fingerprint == outcome.token.fingerprint()


async def test_local_callback_ends_on_a_wrong_state_and_ignores_other_paths(world, http):
    account = world.account("revoked")
    port = free_port()
    reconnector = preflight(world.channel, account)
    server = LocalCallback(f"http://localhost:{port}/cb", "the-state", reconnector)
    await server.start()
    try:
        base = f"http://127.0.0.1:{port}"
        assert (await http.get(f"{base}/favicon.ico")).status_code == 404
        page = await http.get(f"{base}/cb?code=stolen&state=not-the-state")
        assert page.status_code == 400 and "Nothing was changed" in page.text
        with pytest.raises(ReconnectError) as info:
            await server.wait(5)
        assert info.value.reason == "state_mismatch"
        assert (await http.get(f"{base}/cb?code=x&state=the-state")).status_code == 409
    finally:
        await server.stop()


async def test_local_flow_declined_consent(world, http):
    _, page, ended = await local_flow(world, http, None)
    assert page.status_code == 400 and "declined" in page.text
    assert isinstance(ended, ReconnectError) and ended.reason == "declined"


async def test_local_callback_times_out_and_needs_a_loopback_redirect(world):
    reconnector = preflight(world.channel, world.account("revoked"))
    server = LocalCallback(f"http://127.0.0.1:{free_port()}/cb", "s", reconnector)
    await server.start()
    try:
        with pytest.raises(ReconnectError) as info:
            await server.wait(0.05)
        assert info.value.reason == "timeout"
    finally:
        await server.stop()
    with pytest.raises(ReconnectError) as info:
        LocalCallback("https://agent.example.com/cb", "s", reconnector)
    assert info.value.reason == "unsupported" and "--no-browser" in info.value.message


# --- pasted redirects ------------------------------------------------------------------------


def test_a_pasted_url_query_or_bare_code(world):
    reconnector = world.channel.reconnector()
    url = "http://127.0.0.1:8765/oauth/callback?code=ANabc&scope=x&state=st"
    params, with_url = parse_pasted(f"  {url}\n")
    assert with_url and code_from_redirect(params, "st", reconnector) == "ANabc"
    params, with_url = parse_pasted("code=ANabc&state=st")
    assert with_url and code_from_redirect(params, "st", reconnector) == "ANabc"
    params, with_url = parse_pasted("ANabc\n")
    assert not with_url and code_from_redirect(params, None, reconnector) == "ANabc"
    for pasted, reason in ((url.replace("state=st", "state=other"), "state_mismatch"),
                           ("code=ANabc", "state_mismatch"),
                           ("error=access_denied&state=st", "declined"),
                           ("state=st", "rejected")):
        with pytest.raises(ReconnectError) as info:
            code_from_redirect(parse_pasted(pasted)[0], "st", reconnector)
        assert info.value.reason == reason, pasted
    with pytest.raises(ReconnectError):
        parse_pasted("\n")


async def test_reading_the_pasted_line_ends_on_eof_and_timeout():
    assert await read_pasted(io.StringIO("code=x\n"), 5) == "code=x\n"
    with pytest.raises(ReconnectError) as info:
        await read_pasted(io.StringIO(""), 5)
    assert info.value.reason == "timeout" and "ended" in info.value.message
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as silent:
        with pytest.raises(ReconnectError) as info:
            await read_pasted(silent, 0.05)
        assert info.value.reason == "timeout"
        os.close(write_end)  # lets the reader thread finish


# --- verify before storing ------------------------------------------------------------------


async def test_a_missing_expected_profile_stores_nothing_unless_accepted(world, http):
    account = world.account("removed")
    old = world.token_file("removed").read_text()
    reconnector = preflight(world.channel, account)
    attempt = new_attempt(reconnector, account, "http://127.0.0.1:8765/oauth/callback")
    code = parse_pasted(await browse(http, attempt.consent_url, "removed"))[0]["code"]
    with pytest.raises(TargetsMissing) as info:
        await complete(world.channel, account, code, attempt, ctx(http), world.store)
    assert info.value.result.missing == ["21"]
    assert "permissions problem" in info.value.message
    assert world.token_file("removed").read_text() == old
    assert sorted(p.name for p in world.tmp.iterdir() if p.name.startswith("removed")) == [
        "removed.token"]
    assert world.store.load_grant("amazon_ads", "removed") is None

    attempt = new_attempt(reconnector, account, "http://127.0.0.1:8765/oauth/callback")
    code = parse_pasted(await browse(http, attempt.consent_url, "removed"))[0]["code"]
    outcome = await complete(world.channel, account, code, attempt, ctx(http), world.store,
                             accept_missing_targets=True)
    assert outcome.result.missing == ["21"] and outcome.backup is not None
    assert world.store.load_grant("amazon_ads", "removed") is not None


async def test_a_token_from_the_environment_is_never_written(world, http):
    account = world.account("env")
    with pytest.raises(ReconnectError) as info:
        preflight(world.channel, account)
    assert info.value.reason == "unsupported" and "--show-token" in info.value.message
    with pytest.raises(ReconnectError) as info:
        preflight(world.channel, account, link=True, show_token=True)
    assert "refresh_token_file" in info.value.message
    with pytest.raises(ReconnectError) as info:  # the flag is for environment tokens only
        preflight(world.channel, world.account("revoked"), show_token=True)
    reconnector = preflight(world.channel, account, show_token=True)
    attempt = new_attempt(reconnector, account, "http://127.0.0.1:8765/oauth/callback")
    code = parse_pasted(await browse(http, attempt.consent_url, "env"))[0]["code"]
    before = sorted(p.name for p in world.tmp.iterdir())
    outcome = await complete(world.channel, account, code, attempt, ctx(http), world.store)
    assert outcome.stored_in is None and outcome.backup is None
    assert outcome.source == "channels.amazon_ads.accounts[2].refresh_token"
    assert outcome.token.reveal() == world.sim.account("env").refresh_token
    assert sorted(p.name for p in world.tmp.iterdir()) == before


# --- links, completed by the agent ----------------------------------------------------------


@pytest.fixture
async def agent(world):
    service = AgentService(world.config, load_plugins())
    async with TestClient(TestServer(make_app(service))) as client:
        yield service, client
    await service.stop()


async def deliver(client: TestClient, location: str):
    """The browser arriving at the agent's callback (the link's host stands for the agent)."""
    response = await client.get(f"{CALLBACK_PATH}?{urlsplit(location).query}")
    return response.status, await response.text()


def valid(service: AgentService, account: str):
    labels = {"channel": "amazon_ads", "account": account,
              "region": service.find_account("amazon_ads", account).region}
    return service.metrics.registry.get_sample_value("channel_credential_valid", labels)


async def test_a_link_is_completed_by_the_agent_once(world, agent, http):
    service, client = agent
    account = world.account("revoked")
    await service.scheduler.check_now(account)
    assert valid(service, "revoked") == 0
    link, _ = create_link(service.store, world.channel, account,
                          preflight(world.channel, account, link=True), LINK_REDIRECT)
    location = await browse(http, link.consent_url, "revoked")
    assert location.startswith(LINK_REDIRECT + "?")

    status, page = await deliver(client, location)
    assert status == 200 and "reconnected" in page and "the check after it: valid" in page
    assert valid(service, "revoked") == 1
    assert world.token_file("revoked").read_text().strip() == \
        world.sim.account("revoked").refresh_token
    labels = {"channel": "amazon_ads", "account": "revoked", "region": "na"}
    assert service.metrics.registry.get_sample_value(
        "channel_credential_reconnected_timestamp_seconds", labels) is not None
    status, page = await deliver(client, location)  # reused: the same redirect again
    assert status == 409 and "already been used" in page
    assert [(entry.status, entry.detail.startswith("account revoked is reconnected"))
            for entry in service.store.links()] == [("succeeded", True)]


async def test_an_expired_link_changes_nothing(world, agent, http):
    service, client = agent
    account = world.account("revoked")
    old = world.token_file("revoked").read_text()
    link, _ = create_link(service.store, world.channel, account, world.channel.reconnector(),
                          LINK_REDIRECT, now=time.time() - 2 * 86400)
    location = await browse(http, link.consent_url, "revoked")
    status, page = await deliver(client, location)
    assert status == 410 and "expired" in page
    assert world.token_file("revoked").read_text() == old
    assert world.sim.count(path="/auth/o2/token") == 0  # the code was never exchanged
    assert [entry.status for entry in service.store.links()] == ["expired"]


async def test_declined_withdrawn_and_unknown_links(world, agent, http):
    service, client = agent
    account = world.account("revoked")
    old = world.token_file("revoked").read_text()
    reconnector = world.channel.reconnector()
    link, _ = create_link(service.store, world.channel, account, reconnector, LINK_REDIRECT)
    status, page = await deliver(client, await browse(http, link.consent_url, None))
    assert status == 400 and "declined" in page
    assert service.store.links()[0].status == "failed"

    link, _ = create_link(service.store, world.channel, account, reconnector, LINK_REDIRECT)
    assert service.store.cancel_links("amazon_ads", "revoked", time.time()) == 1
    status, page = await deliver(client, await browse(http, link.consent_url, "revoked"))
    assert status == 410 and "withdrawn" in page

    status, _ = await deliver(client, f"{LINK_REDIRECT}?code=x&state=forged")
    assert status == 404
    status, _ = await deliver(client, f"{LINK_REDIRECT}?code=x")
    assert status == 400
    assert world.token_file("revoked").read_text() == old
    assert service.store.load_grant("amazon_ads", "revoked") is None


async def test_a_reconnect_recorded_by_another_process_shows_at_the_next_check(world, agent):
    service, _ = agent
    account = world.account("revoked")
    await service.scheduler.check_now(account)
    world.sim.set_scenario("revoked", "healthy")
    # what `channel-agent reconnect` does from its own process, on its own connection
    other = StateStore(world.config.agent.state_path)
    token = Secret(world.sim.account("revoked").refresh_token)
    other.record_grant("amazon_ads", "revoked", Grant(token.fingerprint(), granted=1000.0,
                                                      reconnected=1001.0))
    other.close()
    state = await service.scheduler.check_now(account)
    assert (state.valid, state.reconnected, state.refresh_issued) == (True, 1001.0, 1000.0)


# --- the command line, in-process -----------------------------------------------------------


async def test_list_leaves_out_accounts_reconnected_since_their_last_check(world):
    """...and keeps a rejected account whose latest check ended transiently: the alert that
    points here says the rejection stands."""
    store = StateStore(world.config.agent.state_path)
    for name in ("revoked", "removed"):
        state = AccountState("amazon_ads", name, "na")
        state.apply(CheckResult(valid=False, reason="invalid_grant"), now=100.0)
        state.apply(CheckResult(valid=None, reason="timeout"), now=110.0)
        store.save_account(state)
    store.record_grant("amazon_ads", "removed", Grant("fp", granted=150.0, reconnected=200.0))
    store.close()
    config = str(world.tmp / "config.yaml")
    runner = CliRunner(env={"ENV_TOKEN": "Atzr|x"})
    result = runner.invoke(cli, ["reconnect", "--list", "--json", "--config", config])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["account"], r["why"]) for r in rows] == [
        ("revoked", ["credential invalid (invalid_grant)"])]
    assert rows[0]["command"].endswith(f"--account revoked --config {config}")


async def test_usage_errors_exit_2_before_anything_is_asked(world):
    config = str(world.tmp / "config.yaml")
    runner = CliRunner(env={"ENV_TOKEN": "Atzr|x"})
    for args, message in (
        (["amazon_ads"], "give a CHANNEL and --account"),
        (["amazon_ads", "--account", "revoked", "--no-browser", "--link"], "cannot be combined"),
        (["amazon_ads", "--account", "revokd"], "did you mean 'revoked'"),
        (["amazon_adz", "--account", "revoked"], "did you mean 'amazon_ads'"),
        (["amazon_ads", "--account", "revoked", "--timeout", "soon"], "--timeout"),
        (["amazon_ads", "--account", "revoked", "--show-token"], "--show-token is only for"),
    ):
        result = runner.invoke(cli, ["reconnect", *args, "--config", config])
        assert result.exit_code == 2, args
        assert message in result.output, (args, result.output)
    assert world.sim.count(path="/auth/o2/token") == 0


def test_plugins_written_before_targets_still_build_their_verify_result():
    """ProfileInfo and VerifyResult(profiles=...) are the deprecated names of TargetInfo and
    targets=: a plugin that still uses them works unchanged."""
    from agent.channel import ProfileInfo, TargetInfo, VerifyResult

    old = VerifyResult(refresh_token=Secret("Atzr|x"), profiles=[ProfileInfo(id="1")],
                       missing=["2"])
    assert old.targets == [TargetInfo(id="1")] and old.missing == ["2"]
    assert VerifyResult(Secret("Atzr|x"), [TargetInfo(id="3")]).targets == [TargetInfo(id="3")]

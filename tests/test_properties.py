"""Random and hostile input for every parser of outside input (hypothesis).

Configuration file, web configuration file, durations, every Amazon answer (token endpoint,
profiles, campaign probe, whole checks) and every API request body: a clear error or a
result, never another exception, a hang (each example has a deadline) or a stored partial
record. Example counts: tests/conftest.py (more with CHANNEL_AGENT_LONG_TESTS=1).
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from channel_agent_amazon_ads import ads_api
from channel_agent_amazon_ads.channel import AmazonAdsChannel
from channel_agent_amazon_lwa import grants as lwa
from channel_agent_amazon_lwa.classify import ProviderError, describe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.channel import REASONS, TRANSIENT_REASONS
from agent.checks.httpretry import retry_after
from agent.config.durations import format_duration, parse_duration
from agent.config.loader import ConfigError, build_config, parse_config
from agent.plugins import load_plugins
from agent.service import AgentService, HttpOptions
from agent.web.auth import WebSecurity, _basic_credentials
from agent.web.config import parse_web_config
from agent.web.server import make_app
from tests.fakes import FakeChannel, FakePlugin

CHANNELS = {"amazon_ads": AmazonAdsChannel, "fake": FakeChannel}
PLANTED = "PLANTED-secret-0b7e"
REFRESH = "Atzr|PLANTED-refresh-token"
SUITE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- strategies ------------------------------------------------------------------------------

CONFIG_WORDS = [
    "agent", "channels", "amazon_ads", "fake", "accounts", "name", "region", "na", "eu", "fe",
    "client_id", "client_secret", "client_secret_file", "refresh_token", "refresh_token_file",
    "expected_profiles", "permission_probe", "endpoints", "token_url", "api_url", "retry",
    "initial_backoff", "max_backoff", "listen_address", "state_path", "check_interval",
    "check_timeout", "max_concurrency", "note", "refresh_token_max_age", "<<", "/dev/zero",
    "${HOME}", "${NOPE}", "$$", "${", "5m", "0", "-1s", "1h30m", ":memory:", "127.0.0.1:0",
    "http://x", PLANTED,
]
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True) | st.text(max_size=30) | st.sampled_from(CONFIG_WORDS))
keys = st.sampled_from([w for w in CONFIG_WORDS if w != PLANTED]) | st.text(max_size=12)
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(keys, inner, max_size=5), max_leaves=25)
yaml_text = st.lists(st.sampled_from(list("ab:- \n\t{}[],&*!|>'\"#%@`?$0.\\") + [
    "agent", "channels", "<<", "*a", "&a", "!!binary", "!!python/name:os.system"]),
    max_size=80).map("".join)


def valid_config() -> dict:
    return {
        "agent": {"state_path": ":memory:", "check_interval": "5m", "check_timeout": "30s"},
        "channels": {
            "amazon_ads": {"client_id": "cid", "client_secret": PLANTED, "accounts": [
                {"name": "acme", "region": "na", "refresh_token": REFRESH,
                 "expected_profiles": [1, 2]}]},
            "fake": {"accounts": [{"name": "f1", "region": "eu", "note": "n"}]},
        },
    }


def paths_in(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from paths_in(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from paths_in(value, (*prefix, index))


@st.composite
def mutated_configs(draw):
    """A valid configuration with one value replaced by anything, or one key removed."""
    config = valid_config()
    path = draw(st.sampled_from(list(paths_in(config))[1:]))
    parent = config
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(trees)
    return config


def assert_clear(error: ConfigError) -> None:
    assert error.problems
    for problem in error.problems:
        text = str(problem)
        assert problem.message and PLANTED not in text and "PLANTED-refresh" not in text


# --- configuration ---------------------------------------------------------------------------


@SUITE_SETTINGS
@given(text=st.text(max_size=300) | yaml_text)
def test_config_text_is_a_config_or_clear_problems(text, tmp_path):
    try:
        parse_config(text, CHANNELS, base_dir=tmp_path, environ={})
    except ConfigError as error:
        assert_clear(error)


@SUITE_SETTINGS
@given(tree=trees | mutated_configs())
def test_config_structures_are_a_config_or_clear_problems(tree, tmp_path):
    try:
        text = yaml.safe_dump(tree)
    except (yaml.YAMLError, ValueError):
        return
    try:
        config = parse_config(text, CHANNELS, base_dir=tmp_path, environ={})
    except ConfigError as error:
        assert_clear(error)
        return
    assert all(account.name for account in config.accounts())


@SUITE_SETTINGS
@given(tree=mutated_configs())
def test_python_configs_are_a_config_or_clear_problems(tree, tmp_path):
    try:
        build_config(tree, CHANNELS, base_dir=tmp_path, environ={})
    except ConfigError as error:
        assert_clear(error)


WEB_WORDS = ["tls_server_config", "cert_file", "key_file", "client_auth_type", "client_ca_file",
             "min_version", "TLS12", "TLS13", "cipher_suites", "http_server_config", "headers",
             "X-Frame-Options", "deny", "basic_auth_users", "rate_limit", "interval", "burst",
             "$2b$04$" + "a" * 53, "$2y$99$" + "b" * 53, "RequireAndVerifyClientCert", "/dev/zero"]


@SUITE_SETTINGS
@given(tree=st.recursive(scalars | st.sampled_from(WEB_WORDS), lambda inner: st.lists(
    inner, max_size=3) | st.dictionaries(st.sampled_from(WEB_WORDS) | st.text(max_size=8), inner,
                                         max_size=4), max_leaves=15))
def test_web_configs_are_a_config_or_clear_problems(tree, tmp_path):
    try:
        text = yaml.safe_dump(tree)
    except (yaml.YAMLError, ValueError):
        return
    try:
        parse_web_config(text, base_dir=tmp_path)
    except ConfigError as error:
        assert error.problems and all(p.message for p in error.problems)


@given(header=st.text(max_size=60) | st.builds(lambda s: "Basic " + s, st.text(max_size=40)))
def test_any_authorization_header_is_read_without_error(header):
    user, password = _basic_credentials(header)
    assert user is None or isinstance(user, str)
    assert isinstance(password, bytes)


# --- durations and Retry-After ---------------------------------------------------------------


@given(value=st.text(max_size=40) | st.from_regex(r"[0-9]{1,20}(ms|s|m|h|d|w|y){1,3}")
       | st.integers() | st.floats() | st.none() | st.booleans() | st.lists(st.integers()))
def test_any_duration_is_seconds_or_a_clear_error(value):
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        assert "duration" in str(error)
        return
    assert math.isfinite(seconds) and seconds >= 0


@given(millis=st.integers(0, 10**15))
def test_durations_round_trip(millis):
    assert parse_duration(format_duration(millis / 1000)) == pytest.approx(millis / 1000)


@given(value=st.text(max_size=60))
def test_any_retry_after_header_is_a_wait_or_ignored(value):
    try:
        response = httpx.Response(429, headers={"Retry-After": value})
    except (UnicodeEncodeError, ValueError):
        return  # not a header httpx would have received
    wait = retry_after(response, 1_700_000_000.0)
    assert wait is None or (math.isfinite(wait) and wait >= 0)


# --- Amazon answers --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from([REFRESH, PLANTED, "invalid_grant", "invalid_client", "server_error",
                       "access_token", "profileId", "campaigns"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["error", "error_description", "access_token", "expires_in", "token_type",
         "refresh_token", "code", "details", "message", "requestId", "errors", "profileId",
         "campaigns"]) | st.text(max_size=6), inner, max_size=5),
    max_leaves=12)
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 415, 429, 500, 502, 503,
                            504]) | st.integers(100, 599)


@st.composite
def answers(draw) -> httpx.Response:
    status = draw(statuses)
    content_type = draw(st.sampled_from(["application/json", "text/html", "", "text/plain",
                                         "application/json; charset=latin-1"]))
    if draw(st.booleans()):
        body = json.dumps(draw(json_values), allow_nan=True).encode()
    else:
        body = draw(st.binary(max_size=200))
    headers = {"Content-Type": content_type} if content_type else {}
    if draw(st.booleans()):
        headers["Retry-After"] = draw(st.sampled_from(["0", "1", "-5", "nan", "soon", ""]))
    return httpx.Response(status, content=body, headers=headers)


def _conclusive_allowed(response: httpx.Response, error: ProviderError, lwa_answer: bool) -> bool:
    """Principle 1: only a rejection is conclusive; 2xx, 429, 5xx never are, except an
    LwA invalid_client, which means the same with any error status."""
    if error.verdict.valid is None:
        return True
    status = response.status_code
    if lwa_answer and status >= 300 and error.verdict.reason == "invalid_client":
        return True
    return 400 <= status < 500 and status != 429


@given(response=answers())
def test_token_answers_are_a_grant_or_a_classified_error(response):
    try:
        grant = lwa.parse_refresh_response(response)
    except ProviderError as error:
        assert error.verdict.reason in REASONS
        assert _conclusive_allowed(response, error, lwa_answer=True)
        assert len(error.detail) < 1000
        return
    assert response.is_success and grant.access_token.reveal() and grant.expires_in > 0


@pytest.mark.parametrize("parse", [ads_api.parse_profile_list, ads_api.parse_campaigns_probe])
@given(response=answers())
def test_ads_api_answers_are_accepted_or_a_classified_error(parse, response):
    try:
        result = parse(response)
    except ProviderError as error:
        assert error.verdict.reason in REASONS
        assert _conclusive_allowed(response, error, lwa_answer=False)
        return
    assert response.is_success
    assert result is None or all(isinstance(p["profileId"], int) for p in result)  # profiles


@given(response=answers(), body=json_values)
def test_any_error_description_is_short_text(response, body):
    detail = describe("token", response, body)
    assert isinstance(detail, str) and len(detail) < 1000


class ScriptedAmazon:
    """Answers every request with the next scripted answer (then a healthy one)."""

    def __init__(self) -> None:
        self.script: list[httpx.Response | Exception] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "Atza|x", "expires_in": 3600})
        if request.url.path.endswith("/v2/profiles"):
            return httpx.Response(200, json=[{"profileId": 1}, {"profileId": 2}])
        return httpx.Response(200, json={"campaigns": []})


@pytest.fixture
def amazon_service(tmp_path):
    """An agent checking one Amazon account whose answers the test scripts."""
    amazon = ScriptedAmazon()
    data = valid_config()
    data["agent"] = {"state_path": str(tmp_path / "agent.db"), "check_interval": "1h",
                     "check_timeout": "500ms"}  # a Retry-After: 1 ends the check
    del data["channels"]["fake"]
    data["channels"]["amazon_ads"].update(refresh_interval="0", retry={
        "initial_backoff": "0", "max_backoff": "0"})
    config = build_config(data, CHANNELS, base_dir=tmp_path)
    service = AgentService(config, load_plugins(), HttpOptions(transport=httpx.MockTransport(
        amazon)))
    service.amazon = amazon
    loop = asyncio.new_event_loop()
    yield service, loop
    loop.run_until_complete(service.stop())
    loop.close()


network_errors = st.sampled_from([httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                  httpx.RemoteProtocolError("cut")])


@SUITE_SETTINGS
@given(script=st.lists(answers() | network_errors, min_size=1, max_size=6))
def test_any_sequence_of_amazon_answers_ends_in_a_consistent_stored_state(
    amazon_service, script
):
    service, loop = amazon_service
    account = service.find_account("amazon_ads", "acme")
    before = service.fleet.states[account.key].valid
    service.amazon.script = list(script)
    state = loop.run_until_complete(service.scheduler.check_now(account))
    if state.check_success:
        assert state.reason is None or state.reason not in TRANSIENT_REASONS
    else:
        assert state.reason in TRANSIENT_REASONS and state.valid == before
    assert PLANTED not in state.detail and "PLANTED-refresh" not in state.detail
    service.store.flush()  # what the running loop does FLUSH_DELAY after the write
    with sqlite3.connect(service.store.path) as db:
        rows = db.execute("SELECT account, valid, check_success, reason FROM accounts").fetchall()
    assert rows == [("acme", None if state.valid is None else int(state.valid),
                     int(state.check_success), state.reason)]


# --- API request bodies ----------------------------------------------------------------------

bodies = (st.binary(max_size=300)
          | st.builds(lambda v: json.dumps(v).encode(), json_values)
          | st.builds(lambda c, a: json.dumps({"channel": c, "account": a}).encode(),
                      st.sampled_from(["fake", "amazon_ads", ""]) | json_values,
                      st.sampled_from(["a1", "a2", "nope", ""]) | json_values)
          | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n))
content_types = st.sampled_from(["application/json", "text/plain",
                                 "application/json; charset=utf-16", "application/json; "
                                 "charset=no-such-charset", "multipart/form-data"])


@SUITE_SETTINGS
@given(path=st.sampled_from(["/api/v1/recheck", "/-/reload"]), body=bodies,
       content_type=content_types)
def test_any_request_body_gets_a_clear_answer_and_stores_nothing_partial(
    fake_config, path, body, content_type
):
    loop = asyncio.new_event_loop()
    service = AgentService(fake_config(), load_plugins([FakePlugin()], entry_points=False),
                           loader=lambda: fake_config())
    client = TestClient(TestServer(make_app(service, WebSecurity(None))), loop=loop)
    try:
        loop.run_until_complete(client.start_server())
        response = loop.run_until_complete(client.post(path, data=body,
                                                       headers={"Content-Type": content_type}))
        assert response.status in (200, 400, 404), response.status
        document = loop.run_until_complete(response.json())
        assert document.get("error") or document.get("status") == "success" or "after" in document
        stored = {state.account for state in service.store.load_accounts().values()}
        assert stored <= {"a1", "a2", "a3"}
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(service.stop())
        loop.close()


def test_hypothesis_profile_is_bounded():
    assert settings.default.max_examples <= 2000
    assert settings.default.deadline is not None
    assert Path(__file__).with_name("conftest.py").read_text().count("register_profile") >= 2

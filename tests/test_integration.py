"""The real agent process against the Amazon simulator on loopback."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.storage.state import FLUSH_DELAY
from tests.helpers import BIN, free_port, require_program, simulated_fleet

pytestmark = pytest.mark.integration

CLIENT_SECRET = "PLANTED-client-secret-5f0c1d"
SYNCED_AT = "2026-11-01 04:00:00"  # the warehouse's newest sync of healthy-na's orders
SCENARIOS = {
    "healthy-na": ("na", "healthy"),
    "revoked-eu": ("eu", "revoked"),
    "forbidden-fe": ("fe", "forbidden"),
    "throttled-na": ("na", "throttled"),
    "broken-eu": ("eu", "server_error"),
    "html-fe": ("fe", "html_gateway"),
    "leaky-na": ("na", "leaky_errors"),  # a provider echoing the secrets it was sent
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("world")
    warehouse = sqlite3.connect(tmp / "warehouse.db")
    warehouse.execute("CREATE TABLE sync_runs (account TEXT, dataset TEXT, finished_at TEXT)")
    warehouse.execute("INSERT INTO sync_runs VALUES ('healthy-na', 'orders', ?)", (SYNCED_AT,))
    warehouse.commit()
    warehouse.close()
    freshness = {
        "freshness_sources": {
            "pipeline": {"type": "heartbeat"},
            "warehouse": {"type": "sql", "url": f"sqlite:///{tmp / 'warehouse.db'}",
                          "query": "SELECT max(finished_at) FROM sync_runs "
                                   "WHERE account = :account AND dataset = :dataset"},
        },
        "datasets": {"sp_campaigns_daily": {"source": "pipeline", "max_age": "36h"},
                     "orders": {"source": "warehouse", "max_age": "2h"}},
    }
    with simulated_fleet(tmp, SCENARIOS, CLIENT_SECRET, freshness, check_interval="1h",
                         check_timeout="4s") as fleet:
        for name in SCENARIOS:
            fleet.agent.recheck(name)
        yield {"sim": fleet.sim, "agent": fleet.agent, "tmp": tmp, "config": fleet.config}


def test_each_scenario_is_classified(world):
    agent = world["agent"]
    assert agent.sample("channel_credential_valid", "healthy-na") == 1
    assert agent.sample("channel_credential_valid", "revoked-eu") == 0
    assert agent.sample("channel_credential_failure_reason", "revoked-eu",
                        reason="invalid_grant") == 1
    assert agent.sample("channel_credential_valid", "forbidden-fe") == 0
    assert agent.sample("channel_target_accessible", "forbidden-fe", target_kind="profile",
                        target="1002") == 0
    for name, reason in (("throttled-na", "throttled"), ("broken-eu", "server_error"),
                         ("html-fe", "server_error")):
        assert agent.sample("channel_credential_check_success", name) == 0
        assert agent.sample("channel_credential_valid", name) is None  # never concluded
        assert agent.sample("channel_credential_failure_reason", name, reason=reason) == 1


def test_transient_failure_keeps_last_conclusive_value(world):
    agent, sim = world["agent"], world["sim"]
    sim.set_scenario("healthy-na", "server_error")
    try:
        after = agent.recheck("healthy-na")["after"]
        assert after["state"] == "unverified" and after["reason"] == "server_error"
        assert agent.sample("channel_credential_valid", "healthy-na") == 1
        assert agent.sample("channel_credential_check_success", "healthy-na") == 0
    finally:
        sim.set_scenario("healthy-na", "healthy")
    assert agent.recheck("healthy-na")["after"]["state"] == "valid"


def test_revocation_flips_a_valid_account(world):
    agent, sim = world["agent"], world["sim"]
    sim.set_scenario("throttled-na", "healthy")
    assert agent.recheck("throttled-na")["after"]["valid"] is True
    sim.set_scenario("throttled-na", "revoked")
    result = agent.recheck("throttled-na")
    assert result["before"]["valid"] is True
    assert result["after"]["valid"] is False and result["after"]["reason"] == "invalid_grant"
    assert agent.sample("channel_credential_valid", "throttled-na") == 0


def test_metrics_pass_promtool(world):
    promtool = require_program("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=world["agent"].metrics(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_endpoints(world):
    url = world["agent"].url
    assert httpx.get(url + "/-/healthy").status_code == 200
    page = httpx.get(url + "/").text
    assert "revoked-eu" in page and "invalid_grant" in page and "/metrics" in page
    status = httpx.get(url + "/api/v1/status").json()
    assert {a["account"] for a in status["accounts"]} == set(SCENARIOS)
    bad = httpx.post(url + "/api/v1/recheck", json={"channel": "amazon_ads"})
    assert bad.status_code == 400 and bad.json()["field"] == "account"
    assert httpx.post(url + "/api/v1/recheck",
                      json={"channel": "amazon_ads", "account": "nope"}).status_code == 404
    requests = {
        (s.labels["endpoint"], s.labels["code"])
        for f in text_string_to_metric_families(world["agent"].metrics())
        for s in f.samples if s.name == "channel_agent_api_requests_total"
    }
    assert ("token", "200") in requests and ("token", "400") in requests


def test_status_command_filters_and_pages_through_the_api(world):
    url = world["agent"].url
    invalid = httpx.get(url + "/api/v1/accounts", params={"state": "invalid"}).json()
    assert invalid["accounts"] and {a["state"] for a in invalid["accounts"]} == {"invalid"}
    command = [BIN / "channel-agent", "status", "--url", url, "--state", "invalid",
               "--channel", "amazon_ads"]
    shown = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["accounts"] == invalid["accounts"] and doc["summary"] == invalid["summary"]
    table = subprocess.run([*command, "--limit", "1"], capture_output=True, text=True,
                           timeout=30).stdout
    assert table.startswith(f"{len(SCENARIOS)} account(s): ")
    assert invalid["accounts"][0]["account"] in table and "(more accounts match" in table
    refused = subprocess.run([*command[:4], "--label", "merchant"], capture_output=True,
                             text=True, timeout=30)
    assert refused.returncode == 1 and "query parameter 'label'" in refused.stderr


def test_restart_serves_restored_state_at_once(world):
    agent = world["agent"]
    before = httpx.get(agent.url + "/api/v1/status").json()["accounts"]
    agent.stop()
    agent.start()  # check_interval is 1h: nothing is checked again before we look
    after = httpx.get(agent.url + "/api/v1/status").json()["accounts"]
    key = ("account", "valid", "reason", "last_check", "last_valid", "refresh_token_issued")
    assert [{k: a[k] for k in key} for a in after] == [{k: a[k] for k in key} for a in before]
    assert agent.sample("channel_credential_valid", "revoked-eu") == 0
    assert agent.sample("channel_credential_last_valid_timestamp_seconds", "healthy-na") > 0


def test_a_killed_agent_keeps_every_committed_result(world):
    agent, sim = world["agent"], world["sim"]
    sim.set_scenario("healthy-na", "server_error")
    try:
        assert agent.recheck("healthy-na")["after"]["reason"] == "server_error"
        time.sleep(FLUSH_DELAY + 0.3)  # results are committed in batches, FLUSH_DELAY apart
        agent.proc.kill()  # no shutdown: nothing is flushed on the way out
        agent.proc.wait(timeout=10)
        agent.start()
        restored = httpx.get(agent.url + "/api/v1/status").json()["accounts"]
        assert next(a for a in restored if a["account"] == "healthy-na")["reason"] == (
            "server_error")
    finally:
        sim.set_scenario("healthy-na", "healthy")
    assert agent.recheck("healthy-na")["after"]["state"] == "valid"


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_heartbeats_from_api_and_cli_show_at_once_and_survive_a_restart(world):
    agent = world["agent"]
    sp = {"dataset": "sp_campaigns_daily"}
    assert agent.sample("channel_data_staleness_threshold_seconds", "healthy-na", **sp) == 129600
    assert agent.sample("channel_data_staleness_seconds", "healthy-na", **sp) is None

    synced = int(time.time()) - 3600
    agent.post_heartbeat("healthy-na", "sp_campaigns_daily", _rfc3339(synced))
    assert agent.sample("channel_data_last_updated_timestamp_seconds", "healthy-na",
                        **sp) == synced
    assert agent.sample("channel_data_staleness_seconds", "healthy-na", **sp) >= 3600

    cli = [BIN / "channel-agent", "mark-synced", "amazon_ads", "--url", agent.url,
           "--dataset", "sp_campaigns_daily"]
    ok = subprocess.run([*cli, "--account", "revoked-eu", "--at", str(synced - 86400)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # it says what was recorded: account, data set, time (epoch seconds given, RFC 3339 shown)
    assert ok.stdout == (f"recorded: amazon_ads/revoked-eu data set sp_campaigns_daily synced "
                         f"at {_rfc3339(synced - 86400)} (agent {agent.url})\n")
    assert agent.sample("channel_data_last_updated_timestamp_seconds", "revoked-eu",
                        **sp) == synced - 86400
    refused = subprocess.run([*cli, "--account", "nobody-xx"], capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode == 1 and "(field: account)" in refused.stderr

    status = subprocess.run([BIN / "channel-agent", "status", "--url", agent.url],
                            capture_output=True, text=True, timeout=30).stdout
    revoked = next(line for line in status.splitlines()
                   if "revoked-eu" in line and "sp_campaigns_daily" in line)
    assert revoked.split()[2:6] == ["invalid", "sp_campaigns_daily", "pipeline", "fresh"]
    assert "1d1h" in revoked and "1d12h" in revoked  # age and max_age
    assert any("no data yet" in line for line in status.splitlines())
    # check runs beside the agent and reads the heartbeat from its state file
    checked = subprocess.run([BIN / "channel-agent", "check", "--config", str(world["config"]),
                              "--account", "revoked-eu", "--json"],
                             capture_output=True, text=True, timeout=60)
    (doc,) = json.loads(checked.stdout)
    sp_doc = next(d for d in doc["datasets"] if d["dataset"] == "sp_campaigns_daily")
    assert sp_doc["last_updated"] == _rfc3339(synced - 86400)

    agent.stop()
    agent.start()
    assert agent.sample("channel_data_last_updated_timestamp_seconds", "healthy-na",
                        **sp) == synced
    assert agent.sample("channel_data_last_updated_timestamp_seconds", "revoked-eu",
                        **sp) == synced - 86400


def test_sql_source_is_polled_by_the_running_agent(world):
    agent = world["agent"]
    orders = {"dataset": "orders", "source": "warehouse"}
    expected = dt.datetime.fromisoformat(SYNCED_AT).replace(tzinfo=dt.UTC).timestamp()
    deadline = time.monotonic() + 15  # the first round runs when the agent starts
    while time.monotonic() < deadline and agent.sample(
            "channel_data_last_updated_timestamp_seconds", "healthy-na", **orders) is None:
        time.sleep(0.1)
    assert agent.sample("channel_data_last_updated_timestamp_seconds", "healthy-na",
                        **orders) == expected
    assert agent.sample("channel_data_staleness_seconds", "broken-eu", **orders) is None
    up = [s for f in text_string_to_metric_families(agent.metrics()) for s in f.samples
          if s.name == "channel_freshness_source_up"]
    assert [(s.labels, s.value) for s in up] == [({"source": "warehouse"}, 1.0)]
    page = httpx.get(agent.url + "/accounts/amazon_ads/healthy-na").text
    assert "<td>orders</td>" in page and ">stale</span>" in page


# Every endpoint, with the requests the secret test sends to it. A new route must be added
# here (test_no_secret_leaves_the_process fails until it is).
def _endpoint_requests(accounts) -> dict[tuple[str, str], list[dict]]:
    return {
        ("GET", "/"): [{}, {"params": {"q": CLIENT_SECRET}}, {"params": {"state": "invalid"}},
                       {"params": {"label": CLIENT_SECRET}}],
        ("GET", "/metrics"): [{}],
        ("GET", "/api/v1/status"): [{}, {"params": {"cursor": CLIENT_SECRET}}],
        ("GET", "/api/v1/accounts"): [{}, {"params": {"limit": "2"}},
                                      {"params": {"reason": CLIENT_SECRET}},
                                      {"params": {"state": CLIENT_SECRET}}],
        ("GET", "/accounts/{channel}/{account}"): [
            *({"path": f"/accounts/amazon_ads/{name}"} for name in accounts),
            {"path": f"/accounts/amazon_ads/{CLIENT_SECRET}"}],
        ("POST", "/accounts/{channel}/{account}/reconnect-link"): [
            {"path": "/accounts/amazon_ads/leaky-na/reconnect-link"},
            {"path": f"/accounts/amazon_ads/{CLIENT_SECRET}/reconnect-link"}],
        ("GET", "/-/healthy"): [{}],
        ("GET", "/-/ready"): [{}],
        ("POST", "/api/v1/recheck"): [
            *({"json": {"channel": "amazon_ads", "account": name}} for name in accounts),
            {"json": {"channel": "amazon_ads", "account": CLIENT_SECRET}},
            {"content": b"{not json " + CLIENT_SECRET.encode()},
            {"content": b"[" * 5000},
        ],
        ("POST", "/api/v1/freshness"): [
            {"json": {"channel": "amazon_ads", "account": "healthy-na",
                      "dataset": "sp_campaigns_daily", "last_updated": time.time() - 60}},
            {"json": {"channel": "amazon_ads", "account": "healthy-na", "dataset": CLIENT_SECRET,
                      "last_updated": CLIENT_SECRET}},
            {"content": b"\xff" + CLIENT_SECRET.encode()},
            {"json": {CLIENT_SECRET: 1}},  # an unknown field's name is quoted back, masked
        ],
        ("POST", "/api/v1/freshness/batch"): [
            {"json": {"heartbeats": [
                {"channel": "amazon_ads", "account": "healthy-na", "dataset": "sp_campaigns_daily",
                 "last_updated": time.time() - 30},
                {"channel": "amazon_ads", "account": CLIENT_SECRET, "dataset": CLIENT_SECRET,
                 "last_updated": CLIENT_SECRET}]}},
            {"json": {"heartbeats": [CLIENT_SECRET], CLIENT_SECRET: 1}},
        ],
        ("GET", "/oauth/callback"): [{"params": {"state": CLIENT_SECRET, "code": CLIENT_SECRET}},
                                     {"params": {"error": "access_denied"}}],
        ("POST", "/-/reload"): [{}],
    }


def _command_args(config: Path, url: str, broken: Path) -> dict[str, list[list[str]]]:
    """Every command and how the secret test runs it (``run`` is the agent itself)."""
    return {
        "check": [["--config", str(config), "--json"],
                  ["--config", str(config), "--account", "leaky-na"],
                  ["--config", str(broken)]],
        "status": [["--url", url], ["--url", url, "--json"]],
        "plugins": [[], ["--json"]],
        "mark-synced": [["amazon_ads", "--account", "healthy-na", "--dataset",
                         "sp_campaigns_daily", "--url", url],
                        ["amazon_ads", "--account", CLIENT_SECRET, "--dataset", CLIENT_SECRET,
                         "--url", url]],
        "reconnect": [["--list", "--config", str(config)], ["--pending", "--config", str(config)],
                      ["amazon_ads", "--account", "nobody", "--config", str(config)]],
        "config check": [[str(config)], [str(broken)], ["--connect", str(config)]],
        "config schema": [[]],
        "inventory": [["--config", str(config)], ["--config", str(config), "--json"]],
        "run": [["--config", str(broken)]],
        "demo": [],  # test_no_secret_leaves_the_demo
    }


def _commands(group, prefix="") -> set[str]:
    import click

    names = set()
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix}{name}"
        names |= _commands(command, f"{path} ") if isinstance(command, click.Group) else {path}
    return names


def test_no_secret_leaves_the_process(world):
    from agent.cli import build_cli
    from agent.web.server import make_app

    agent, sim, tmp, config = world["agent"], world["sim"], world["tmp"], world["config"]
    outputs: dict[str, str] = {}

    requests = _endpoint_requests(("healthy-na", "revoked-eu", "leaky-na"))
    routes = {(r.method, r.resource.canonical) for r in make_app(None).router.routes()
              if r.method != "HEAD"}
    assert routes == set(requests), "add the new endpoint to _endpoint_requests"
    for (method, route), variants in requests.items():
        for i, kwargs in enumerate(variants):
            path = kwargs.pop("path", route)
            response = httpx.request(method, agent.url + path, timeout=30, **kwargs)
            outputs[f"{method} {path} #{i}"] = str(response.headers) + response.text
    for path in ("/nope", "/api/v1/recheck"):  # a 404 and a 405
        outputs[f"GET {path}"] = httpx.get(agent.url + path).text

    original = config.read_text()
    data = json.loads(original)
    section = data["channels"]["amazon_ads"]
    section["client_secret"] = CLIENT_SECRET  # given both ways: a problem, never its value
    section["client_secrett"] = CLIENT_SECRET
    broken = tmp / "broken-with-secrets.yaml"
    broken.write_text(json.dumps(data))
    try:
        config.write_text(json.dumps(data))
        outputs["POST /-/reload (bad config)"] = httpx.post(agent.url + "/-/reload").text
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        config.write_text(original)
    assert httpx.post(agent.url + "/-/reload").status_code == 200

    commands = _command_args(config, agent.url, broken)
    assert _commands(build_cli()) == set(commands), "add the new command to _command_args"
    for command, variants in commands.items():
        for args in variants:
            result = subprocess.run([BIN / "channel-agent", *command.split(), *args],
                                    capture_output=True, text=True, timeout=60)
            outputs[f"{command} {' '.join(args)}"] = result.stdout + result.stderr
    outputs["log"] = agent.log.read_text()
    outputs["state"] = (tmp / "var" / "agent.db").read_bytes().decode("latin-1")

    planted = [CLIENT_SECRET, *(a.refresh_token for a in sim.accounts), *sim._tokens]
    assert "revoked-eu" in outputs["check --config " + str(config) + " --json"]
    assert "client_secrett" in outputs["POST /-/reload (bad config)"]
    assert "configuration reload failed" in outputs["log"]
    for name, text in outputs.items():
        for secret in planted:
            assert secret not in text, f"a secret leaked into {name}"
        assert "Atza|" not in text.replace("Atza|***", ""), f"an access token leaked into {name}"


def test_no_secret_leaves_the_demo(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [BIN / "channel-agent", "demo", "--web.listen-address", f"127.0.0.1:{port}",
         "--check-interval", "2s", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    pages = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(pages) < 3:
            time.sleep(0.5)
            try:
                status = httpx.get(url + "/api/v1/status").json()
            except httpx.HTTPError:
                continue
            if all(a["last_check"] for a in status["accounts"]):
                pages = [httpx.get(url + path).text for path in ("/", "/metrics")]
                pages.append(httpx.post(url + "/api/v1/recheck", timeout=30, json={
                    "channel": "amazon_ads", "account": "acme-us"}).text)
    finally:
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=15)[0]
    assert len(pages) == 3, output
    secrets_dir = tmp_path / "amazon_ads" / "secrets"
    planted = [p.read_text().strip() for p in secrets_dir.iterdir()]
    assert len(planted) >= 10
    for text in [output, *pages, (tmp_path / "agent.db").read_bytes().decode("latin-1")]:
        for secret in planted:
            assert secret not in text


def test_check_exit_codes(world):
    config = str(world["config"])
    ok = subprocess.run([BIN / "channel-agent", "check", "--config", config,
                         "--account", "healthy-na"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    orders = next(line for line in ok.stdout.splitlines() if " orders " in line)
    assert orders.split()[2:6] == ["valid", "orders", "warehouse", "stale"]  # queried once
    bad = subprocess.run([BIN / "channel-agent", "check", "--config", config,
                          "--account", "revoked-eu"], capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid_grant" in bad.stdout
    broken = world["tmp"] / "broken.yaml"
    broken.write_text("agent:\n  check_intervall: 5m\nchannels: {}\n")
    err = subprocess.run([BIN / "channel-agent", "check", "--config", str(broken)],
                         capture_output=True, text=True)
    assert err.returncode == 2 and "check_intervall" in err.stderr

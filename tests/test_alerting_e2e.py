"""End to end: the agent checks the Amazon simulator; the real Prometheus scrapes it with the
shipped rules and sends alerts to the real Alertmanager running the shipped example.

Prometheus scrapes and evaluates every second. A rule's ``for:`` cannot be changed by
configuration, so the rules are loaded with every ``for:`` divided by 60 (minutes become
seconds: :func:`tests.promstack.shorten_for`). Everything else is the shipped text:
expressions, labels, annotations, routes and inhibit rules.

A Shopify shop sits next to them (its simulator, in the "deprecated" scenario: valid, but its
calls are flagged deprecated), so the dashboard's API-version panels have data.

The accounts have data sets: heartbeats report one of healthy-na's fresh and one stale, and
revoked-eu's stale (its credential is the cause); a third data set comes from a warehouse
whose table is missing, so that freshness source fails.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from channel_agent_amazon_ads.simulator import SimulatorThread
from channel_agent_shopify.simulator import SimShop
from channel_agent_shopify.simulator import Simulator as ShopifySimulator

from tests.helpers import simulated_fleet
from tests.promstack import (
    RULES,
    Alertmanager,
    Prometheus,
    load_yaml,
    offline_alertmanager_config,
    shorten_for,
)
from tests.test_alerting import alert_rules, dashboard, dashboard_panels, runbook_blocks

pytestmark = pytest.mark.integration

SCENARIOS = {
    "healthy-na": ("na", "healthy"),
    "revoked-eu": ("eu", "revoked"),
    "forbidden-fe": ("fe", "forbidden"),
    "throttled-na": ("na", "throttled"),
}
MAX_AGE = 3600  # every data set's threshold
STALE = 2 * MAX_AGE  # how old the stale heartbeats are
# (alert, account, labels): what the fixture waits for in Alertmanager
EXPECTED = [
    ("ChannelCredentialInvalid", "revoked-eu", {}),
    ("ChannelCredentialPermissionLost", "forbidden-fe", {}),
    ("ChannelTargetInaccessible", "forbidden-fe", {}),
    ("ChannelDataStale", "healthy-na", {"dataset": "sb_campaigns_daily"}),
    ("ChannelDataStale", "revoked-eu", {"dataset": "sp_campaigns_daily"}),
    ("ChannelFreshnessSourceDown", None, {"source": "warehouse"}),
]
# The dashboard's variables as a user would pick them: one job, every channel, region and
# account ("All" is the regex .*), and what Grafana puts in for its interval macros.
DASHBOARD_VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "5s",
    "$channel": ".*",
    "$account": ".*",
    "$region": ".*",
    "$merchant": ".*",
    "$job": "channel-agent",
}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def find(alerts: list[dict], alertname: str, account: str | None = None,
         **labels: str) -> dict | None:
    for alert in alerts:
        have = alert["labels"]
        if (have["alertname"] == alertname and have.get("account") == account
                and all(have.get(k) == v for k, v in labels.items())):
            return alert
    return None


def freshness(tmp: Path) -> dict:
    """Two heartbeat data sets and one from a warehouse without its table (query_error),
    polled every 2s; every threshold is MAX_AGE."""
    sqlite3.connect(tmp / "warehouse.db").close()  # an empty database: no sync_runs
    return {
        "freshness_sources": {
            "pipeline": {"type": "heartbeat"},
            "warehouse": {"type": "sql", "url": f"sqlite:///{tmp / 'warehouse.db'}",
                          "query": "SELECT max(finished_at) FROM sync_runs "
                                   "WHERE account = :account AND dataset = :dataset",
                          "interval": "2s", "timeout": "1s"},
        },
        "datasets": {name: {"source": source, "max_age": f"{MAX_AGE}s"} for name, source in (
            ("sp_campaigns_daily", "pipeline"), ("sb_campaigns_daily", "pipeline"),
            ("sd_campaigns_daily", "warehouse"))},
    }


SHOP = "healthy-shop"  # merchant "healthy", like healthy-na


def shopify(tmp: Path, sim: ShopifySimulator) -> dict:
    """The shopify channel's configuration: one shop of ``sim`` (started)."""
    [shop] = sim.shops.values()
    (tmp / "secrets").mkdir(exist_ok=True)
    (tmp / "secrets" / "shopify_client_secret").write_text(sim.client_secret)
    (tmp / "secrets" / f"{SHOP}.access_token").write_text(shop.access_token)
    return {"shopify": {
        "client_id": sim.client_id, "client_secret_file": "secrets/shopify_client_secret",
        "non_expiring_tokens_end": "",  # a custom app: no end date to alert on here
        "accounts": [{"name": SHOP, "shop": shop.domain, "admin_url": sim.shop_url(shop.domain),
                      "access_token_file": f"secrets/{SHOP}.access_token",
                      "required_scopes": shop.scopes, "labels": {"merchant": "healthy"}}],
    }}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerting")
    for name in ("fleet", "am", "prom"):
        (tmp / name).mkdir()
    shops = ShopifySimulator("e2e-shopify-app", "e2e-shopify-secret")
    shops.add_shop(SimShop("healthy.myshopify.com", ["read_orders"], "deprecated"))
    with SimulatorThread(shops), simulated_fleet(  # type: ignore[arg-type]
            tmp / "fleet", SCENARIOS, "e2e-client-secret", freshness(tmp / "fleet"),
            shopify(tmp / "fleet", shops), check_interval="5s", check_timeout="2s") as fleet:
        now = time.time()
        fleet.agent.post_heartbeat("healthy-na", "sp_campaigns_daily", now)
        fleet.agent.post_heartbeat("healthy-na", "sb_campaigns_daily", now - STALE)
        fleet.agent.post_heartbeat("revoked-eu", "sp_campaigns_daily", now - STALE)
        am = Alertmanager(tmp / "am", offline_alertmanager_config())
        prom = Prometheus(tmp / "prom", shorten_for(load_yaml(RULES)),
                          [f"127.0.0.1:{fleet.agent.port}"], alertmanager=am.url)
        with am, prom:
            try:
                wait_for(lambda: all(find(am.alerts(), name, account, **labels)
                                     for name, account, labels in EXPECTED), 60,
                         "the alerts to reach Alertmanager")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; Prometheus has {prom.alerts()}") from None
            yield SimpleNamespace(agent=fleet.agent, am=am, prom=prom)


def test_revoked_account_alert_reaches_alertmanager(stack):
    alert = find(stack.am.alerts(), "ChannelCredentialInvalid", "revoked-eu")
    assert alert["status"]["state"] == "active"
    assert {k: alert["labels"][k] for k in ("severity", "channel", "region", "job")} == {
        "severity": "critical", "channel": "amazon_ads", "region": "eu", "job": "channel-agent"}
    annotations = alert["annotations"]
    assert annotations["summary"] == "amazon_ads rejects the credential of account revoked-eu (eu)"
    assert "reason invalid_grant" in annotations["description"]
    assert "`channel-agent reconnect --list` says how" in annotations["description"]
    base = next(r for g in load_yaml(RULES)["groups"] for r in g["rules"]
                if r.get("record") == "channel_alerts_runbook_info")["labels"]["base_url"]
    assert annotations["runbook_url"] == f"{base}/ChannelCredentialInvalid.md"


def test_healthy_and_transient_accounts_raise_nothing(stack):
    """healthy-na's only alert is its stale data set (the next test): its data set of the
    failing warehouse has no value, so it is neither stale nor fresh. throttled-na's
    transient failures never make it invalid (it is pending ChannelCredentialUnverified,
    whose 6 minutes here outlast the test)."""
    pending_or_firing = stack.prom.alerts()
    assert [(a["labels"]["alertname"], a["labels"].get("dataset")) for a in pending_or_firing
            if a["labels"].get("account") == "healthy-na"] == [
        ("ChannelDataStale", "sb_campaigns_daily")]
    assert not find(pending_or_firing, "ChannelCredentialInvalid", "throttled-na")
    accounts = {a["labels"].get("account") for a in stack.am.alerts()} - {None}
    assert accounts == {"revoked-eu", "forbidden-fe", "healthy-na"}


def test_stale_data_set_fires_and_the_fresh_one_does_not(stack):
    alert = find(stack.am.alerts(), "ChannelDataStale", "healthy-na",
                 dataset="sb_campaigns_daily")
    assert alert["status"]["state"] == "active"
    assert {k: alert["labels"][k] for k in ("severity", "source", "region")} == {
        "severity": "warning", "source": "pipeline", "region": "na"}
    description = alert["annotations"]["description"]
    assert re.search(r"is 2h \d+m \d+s old \(threshold 1h 0m 0s\)\. Its credential is valid: "
                     r"look at the sync pipeline\.$", description), description
    assert not find(stack.prom.alerts(), "ChannelDataStale", "healthy-na",
                    dataset="sp_campaigns_daily")


def test_credential_alert_mutes_the_revoked_accounts_stale_data(stack):
    alerts = stack.am.alerts()
    stale = find(alerts, "ChannelDataStale", "revoked-eu", dataset="sp_campaigns_daily")
    cause = find(alerts, "ChannelCredentialInvalid", "revoked-eu")
    assert cause["status"]["state"] == "active"
    assert stale["status"]["state"] == "suppressed"
    assert stale["status"]["inhibitedBy"] == [cause["fingerprint"]]
    assert "credential is valid" not in stale["annotations"]["description"]


def test_failing_freshness_source_fires(stack):
    alert = find(stack.am.alerts(), "ChannelFreshnessSourceDown", source="warehouse")
    assert alert["status"]["state"] == "active"
    assert alert["labels"]["severity"] == "warning"
    assert "(errors in the last hour: query_error)" in alert["annotations"]["description"]


def test_an_unsharded_agent_has_no_missing_shard(stack):
    """ChannelAgentShardMissing matches count_values' label against the agent's ``count``
    label: their number formats must agree, or every agent would page."""
    [info] = stack.prom.api("query", query="channel_agent_shard_info")["result"]
    assert (info["metric"]["index"], info["metric"]["count"]) == ("0", "1")
    [rule] = [r for _, r in alert_rules() if r["alert"] == "ChannelAgentShardMissing"]
    assert stack.prom.api("query", query=rule["expr"])["result"] == []
    assert not find(stack.prom.alerts(), "ChannelAgentShardMissing")


def test_lost_profile_is_told_through_the_permission_alert(stack):
    """A refused profile is a permission the consent lacks: a ticket, not a page."""
    alerts = stack.am.alerts()
    profile = find(alerts, "ChannelTargetInaccessible", "forbidden-fe")
    cause = find(alerts, "ChannelCredentialPermissionLost", "forbidden-fe")
    assert not find(stack.prom.alerts(), "ChannelCredentialInvalid", "forbidden-fe")
    assert (cause["labels"]["severity"], cause["labels"]["class"]) == ("warning", "permission")
    assert profile["labels"]["target"] == "1002"
    assert profile["status"]["state"] == "suppressed"
    assert profile["status"]["inhibitedBy"] == [cause["fingerprint"]]
    assert "reason forbidden" in cause["annotations"]["description"]
    assert "Not reached any more: profile 1002." in cause["annotations"]["description"]


def fill_in(expr: str) -> str:
    for name, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def test_every_dashboard_query_runs_and_returns_data(stack):
    now = time.time()
    errors, empty = [], []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            name = f"{panel['title']} [{target['refId']}]"
            expr = fill_in(target["expr"])
            try:
                if target["instant"]:
                    result = stack.prom.api("query", query=expr)["result"]
                else:
                    result = stack.prom.api("query_range", query=expr, start=now - 30,
                                            end=now, step=1)["result"]
            except AssertionError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if not result:
                empty.append(name)
    assert not errors
    assert not empty, "these queries returned nothing"


def test_dashboard_variables_list_the_fleet(stack):
    """Each variable's label_values() or query_result() query, as Grafana runs it against
    Prometheus (query_result: the regex picks the value out of each series)."""
    expected = {"job": ["channel-agent"], "channel": ["amazon_ads", "shopify"],
                "region": ["eu", "fe", "na"], "account": sorted([*SCENARIOS, SHOP]),
                "merchant": sorted(name.split("-")[0] for name in SCENARIOS)}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        if match:
            selector, label = fill_in(match[1]), match[2]
            values = stack.prom.api(f"label/{label}/values", **{"match[]": selector})
        else:
            inner = re.fullmatch(r"query_result\((.+)\)", query, re.DOTALL)[1]
            label = re.fullmatch(r'/(\w+)="\(\[\^"\]\+\)"/', variable["regex"])[1]
            result = stack.prom.api("query", query=fill_in(inner))["result"]
            values = {series["metric"][label] for series in result}
        assert sorted(values) == expected[variable["name"]], variable["name"]


@pytest.mark.parametrize("runbook,query", runbook_blocks("promql"),
                         ids=[r for r, _ in runbook_blocks("promql")])
def test_runbook_queries_run(stack, runbook, query):
    stack.prom.api("query", query=query)
